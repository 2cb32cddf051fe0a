"""The LLM factory (``llm.backend``): a local HF folder -> ``HuggingFacePipeline`` (chat-wrapped
when it can), a GGUF file -> llama.cpp, or an OpenAI-compatible server -> ``ChatOpenAI``; all
answer as LangChain chat models behind the same chain."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_huggingface import ChatHuggingFace, HuggingFacePipeline

from erp_chatbot.devices import LLMPlacement
from erp_chatbot.models.llama_cpp import LlamaCppChat, build_llama_cpp
from erp_chatbot.models.quantize import CPU_INT8, marked_quantization, quantize_dynamic_int8
from erp_chatbot.settings import BatchingSettings, LLMSettings, Settings

logger = logging.getLogger(__name__)


class LocalChatHuggingFace(ChatHuggingFace):
    """``ChatHuggingFace`` whose async paths work over a local pipeline.

    Upstream raises ``NotImplementedError`` (``_agenerate``) or reaches for an inference-server
    client (``_astream``) when the LLM is a ``HuggingFacePipeline``; LangServe serves async. These
    hand the chat prompt to the pipeline's own async methods: a batched pipeline awaits its batch
    without holding a thread, a plain one runs the sync generation in a worker thread.
    """

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        kwargs.pop("stream", None)  # upstream's streaming flag is for inference servers, not pipelines
        result = await self.llm._agenerate([self._to_chat_prompt(messages)], stop=stop, **kwargs)
        return self._to_chat_result(result)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        """Chunks of the answer; the chat model's ``astream`` reports each to the callbacks."""
        async for chunk in self.llm._astream(self._to_chat_prompt(messages), stop=stop, **kwargs):
            yield ChatGenerationChunk(message=AIMessageChunk(content=chunk.text), generation_info=chunk.generation_info)

    def _to_chatml_format(self, message: BaseMessage) -> dict:
        """Message text with the tokenizer's special tokens defused.

        Without this, a question or document holding ``<|im_start|>system`` would be tokenized as
        a real turn marker and could open a new system turn; a word joiner (U+2060) inside each
        marker keeps the text readable but makes it plain text to the tokenizer.
        """
        chatml = super()._to_chatml_format(message)
        if isinstance(chatml.get("content"), str):
            chatml["content"] = defuse_special_tokens(chatml["content"], self.tokenizer)
        return chatml


def defuse_special_tokens(text: str, tokenizer: Any) -> str:
    for token in _special_tokens(tokenizer):
        if token in text:
            text = text.replace(token, token[0] + "\u2060" + token[1:])
    return text


def _special_tokens(tokenizer: Any) -> list[str]:
    added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    tokens = {*getattr(tokenizer, "all_special_tokens", []), *(t.content for t in added.values() if t.special)}
    return sorted((t for t in tokens if len(t) > 1), key=len, reverse=True)


def build_llm(
    model_path: Path | None, settings: LLMSettings, placement: LLMPlacement, batching: BatchingSettings | None = None
) -> BaseLanguageModel:
    """Load ``model_path`` as placed by the device plan; chat-wrap it if it has a chat template.

    With ``batching`` enabled, concurrent calls share batched ``generate`` calls (transformers
    only: llama.cpp answers concurrent calls one after another; a server batches on its own).
    ``model_path`` is None for the openai backend, whose weights live on the server.
    """
    if settings.backend == "openai":
        from erp_chatbot.models.openai_server import build_openai_chat

        return build_openai_chat(settings)
    if model_path is None:
        raise ValueError(f"llm.backend {settings.backend} loads a local model: model_path is required")
    if settings.backend == "llama-cpp":
        return build_llama_cpp(model_path, settings, on_gpu=placement.on_gpu)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline

    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(
            f"no Hugging Face model at {model_path} (config.json missing); set llm.model_path "
            "to a local folder saved with save_pretrained, or leave it unset for the demo model"
        )
    if settings.cpu_threads:
        torch.set_num_threads(settings.cpu_threads)
    tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_path, local_files_only=True, **_load_kwargs(placement))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if not placement.on_gpu and CPU_INT8 in (settings.cpu_quantization, marked_quantization(model_path)):
        model = quantize_dynamic_int8(model)
    pipe = pipeline(
        "text-generation",
        model=model,
        tokenizer=tokenizer,
        return_full_text=False,
        **generation_kwargs(settings),
    )
    if batching and batching.enabled:
        from erp_chatbot.runtime.batching import BatchedHuggingFacePipeline

        llm: HuggingFacePipeline = BatchedHuggingFacePipeline(
            pipeline=pipe,
            model_id=str(model_path),
            generation=generation_kwargs(settings),
            batch_size=batching.batch_size,
            max_concurrency=batching.max_concurrency,
            max_wait_ms=batching.max_wait_ms,
        )
    else:
        llm = HuggingFacePipeline(pipeline=pipe, model_id=str(model_path))
    if getattr(tokenizer, "chat_template", None):
        return LocalChatHuggingFace(llm=llm, tokenizer=tokenizer, model_id=str(model_path))
    return llm


def greedy_capped(llm: BaseLanguageModel, max_new_tokens: int) -> Runnable:
    """The same model made greedy and capped at ``max_new_tokens``, for short internal calls such as
    question rewriting and translation."""
    if isinstance(llm, (HuggingFacePipeline, ChatHuggingFace)):
        return llm.bind(pipeline_kwargs={"max_new_tokens": max_new_tokens, "do_sample": False})
    if isinstance(llm, LlamaCppChat) or _is_openai_chat(llm):
        return llm.bind(max_tokens=max_new_tokens, temperature=0.0)
    return llm


def yes_probability(llm: BaseLanguageModel) -> Callable[[list[BaseMessage], RunnableConfig | None], float]:
    """P(yes) of the model's reply to a yes-or-no prompt: from the first token's logits where the
    backend exposes them (llama.cpp), else 1 or 0 from its greedy one-word reply."""
    if isinstance(llm, LlamaCppChat):
        return lambda messages, config=None: llm.yes_probability(messages)
    reply = greedy_capped(llm, 2) | StrOutputParser()

    def from_reply(messages: list[BaseMessage], config: RunnableConfig | None = None) -> float:
        return 0.0 if reply.invoke(messages, config).strip().lower().startswith("no") else 1.0

    return from_reply


def _is_openai_chat(llm: BaseLanguageModel) -> bool:
    try:
        from langchain_openai import ChatOpenAI
    except ImportError:
        return False
    return isinstance(llm, ChatOpenAI)


def model_version(model_path: Path | None, settings: LLMSettings, served: str | None = None) -> str:
    """Identifies the weights and decoding: a changed model or setting gives a new version.

    A served model (no ``model_path``) is identified by its server and the name it serves
    (``served``, as the built model asked the server when ``llm.served_model`` is unset).
    """
    import hashlib
    import json

    if model_path is None:
        decoding = json.dumps({**generation_kwargs(settings), "backend": settings.backend}, sort_keys=True)
        return f"{served or settings.served_model}@{settings.base_url}|{decoding}"
    digest = hashlib.sha256()
    for file in [model_path] if model_path.is_file() else sorted(model_path.glob("*")):
        if file.is_file():
            stat = file.stat()
            digest.update(f"{file.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    decoding = json.dumps(
        {**generation_kwargs(settings), "backend": settings.backend, "cpu_quantization": settings.cpu_quantization},
        sort_keys=True,
    )
    return f"{model_path.name}@{digest.hexdigest()[:12]}|{decoding}"


def generation_kwargs(settings: LLMSettings) -> dict[str, Any]:
    """Decoding settings; temperature 0 means greedy decoding."""
    kwargs: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens}
    if settings.temperature > 0:
        kwargs.update(
            do_sample=True,
            temperature=settings.temperature,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
        )
    else:
        kwargs.update(do_sample=False, repetition_penalty=settings.repetition_penalty)
    return kwargs


def _load_kwargs(placement: LLMPlacement) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"dtype": placement.torch_dtype, "device_map": placement.device_map}
    if placement.max_memory:
        kwargs["max_memory"] = placement.max_memory
    if placement.load_in_8bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    return kwargs


def llm_path(settings: Settings) -> Path | None:
    """The model the configured backend loads: a GGUF file for llama-cpp, an HF folder for
    transformers, nothing for openai (the server holds the weights)."""
    if settings.llm.backend == "openai":
        return None
    if settings.llm.backend == "llama-cpp":
        from erp_chatbot.models.demo import demo_gguf_path

        if settings.llm.model_path:
            return settings.llm.model_path.expanduser()
        return demo_gguf_path(settings.models_dir, settings.llm.demo_model)
    return hf_model_path(settings)


def hf_model_path(settings: Settings) -> Path:
    """HF folder: ``llm.model_path``; else the registry's active version; else the demo model.

    Training and quantization work on HF folders whatever the serving backend.
    """
    from erp_chatbot.models.demo import demo_llm_path
    from erp_chatbot.models.registry import active_version_path

    if settings.llm.model_path and settings.llm.backend == "transformers":
        return settings.llm.model_path.expanduser()
    return active_version_path(settings.registry_dir) or demo_llm_path(settings.models_dir, settings.llm.demo_model)
