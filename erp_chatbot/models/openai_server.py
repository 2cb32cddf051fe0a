"""The LLM served elsewhere: an OpenAI-compatible inference server (vLLM, TGI, llama.cpp's server)
through LangChain's ``ChatOpenAI``, for the scale-out layout where app replicas share one engine.

The app then loads no LLM weights; prompts, grounding, cache and metrics stay the same.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from erp_chatbot.settings import LLMSettings

if TYPE_CHECKING:
    from langchain_openai import ChatOpenAI

_UNUSED_KEY = "not-needed"  # the client insists on a key; servers without auth ignore it


class LLMServerUnavailable(RuntimeError):
    """The configured server could not be reached or serves no model."""


def build_openai_chat(settings: LLMSettings) -> ChatOpenAI:
    """``ChatOpenAI`` at ``llm.base_url`` with the chat decoding settings; the model name is asked
    of the server when ``llm.served_model`` is unset."""
    return _served_chat_class()(
        base_url=settings.base_url,
        api_key=_key(settings),
        model=settings.served_model or served_models(settings)[0],
        temperature=settings.temperature,
        top_p=settings.top_p if settings.temperature > 0 else None,
        max_tokens=settings.max_new_tokens,
        timeout=settings.request_timeout_seconds,
        max_retries=1,
    )


@functools.cache
def _served_chat_class() -> type[ChatOpenAI]:
    """``ChatOpenAI`` that sends the token cap as ``max_tokens``: LangChain's client renames it to
    OpenAI's newer ``max_completion_tokens``, which self-hosted servers (llama.cpp's, TGI, older
    vLLM) ignore, so answers and rewrites ran on to the end of the context."""
    try:
        from langchain_openai import ChatOpenAI
    except ImportError as error:
        raise ImportError("llm.backend is openai: install the extra, pip install 'erp-chatbot[openai]'") from error

    class ServedChatOpenAI(ChatOpenAI):
        def _get_request_payload(self, input_: Any, *, stop: list[str] | None = None, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(input_, stop=stop, **kwargs)
            if "max_completion_tokens" in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            return payload

    return ServedChatOpenAI


def served_models(settings: LLMSettings) -> list[str]:
    """The model ids the server lists at ``/models``."""
    import openai

    client = openai.OpenAI(base_url=settings.base_url, api_key=_key(settings), timeout=10, max_retries=0)
    try:
        models = [model.id for model in client.models.list()]
    except openai.OpenAIError as error:
        raise LLMServerUnavailable(
            f"could not list the models of the LLM server at {settings.base_url} ({error}); "
            "start the server or fix llm.base_url (or set llm.served_model)"
        ) from error
    if not models:
        raise LLMServerUnavailable(f"the LLM server at {settings.base_url} lists no model; set llm.served_model")
    return models


def _key(settings: LLMSettings) -> str:
    return settings.api_key.get_secret_value() if settings.api_key else _UNUSED_KEY
