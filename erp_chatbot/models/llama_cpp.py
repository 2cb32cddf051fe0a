"""The llama.cpp backend: a GGUF file as a LangChain chat model.

On a CPU, llama.cpp decodes the same GGUF weights several times faster than transformers in
float32 and loads them in about a second with no conversion (figures in ``bench/README.md``).
LangChain's ``ChatLlamaCpp`` (in the sunset ``langchain-community``) shares one llama.cpp context
between concurrent calls unguarded, evaluates prompts 8 tokens at a time by default and drops
``stop`` when it streams; this small chat model over ``llama_cpp.Llama.create_chat_completion``
(the GGUF's own chat template) does what the chain needs instead.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGenerationChunk, ChatResult
from pydantic import Field, PrivateAttr

from erp_chatbot.settings import LLMSettings

# Chat-template control tokens such as ``<|im_start|>`` (Qwen, ChatML and most GGUF templates).
_CONTROL_TOKEN = re.compile(r"<\|([A-Za-z0-9_\-]{1,40})\|>")
_ROLES = {"system": "system", "human": "user", "ai": "assistant"}
_CALL_OPTIONS = ("max_tokens", "temperature", "top_p", "repeat_penalty", "seed")
_YES_NO = ("yes", "Yes", "no", "No")


class LlamaCppChat(BaseChatModel):
    """A GGUF model through llama.cpp, shared safely by concurrent requests.

    A ``llama_cpp.Llama`` holds one context, so each generation (a stream included, until it is
    closed) holds the model's lock: concurrent requests are answered one after another. Control
    tokens in message text are defused, so a question or document cannot open a turn of its own.
    Call options (``.bind(max_tokens=64, temperature=0)``) override the decoding fields.
    """

    model_path: str
    n_ctx: int = Field(4096, gt=0, description="context window: prompt and answer")
    n_threads: int | None = Field(None, description="CPU threads; unset = llama.cpp's choice")
    n_batch: int = Field(
        128, gt=0, description="prompt tokens evaluated per step (as fast as 512 on a CPU, a quarter of the logits)"
    )
    n_gpu_layers: int = Field(0, description="layers offloaded to a GPU (-1 = all; needs a CUDA build)")
    max_tokens: int = Field(2048, gt=0)
    temperature: float = Field(0.7, ge=0, description="0 = greedy")
    top_p: float = Field(0.9, gt=0, le=1)
    repeat_penalty: float = Field(1.05, gt=0)
    seed: int = Field(-1, description="-1 = random")
    prompt_cache_mb: int = Field(512, ge=0, description="RAM for saved prompt states; 0 = none")
    use_mmap: bool = Field(
        False,
        description="map the file instead of reading it; llama.cpp then keeps the weights it repacks for "
        "the CPU twice (0.6 GB more for the 1.5B, no faster)",
    )

    _client: Any = PrivateAttr(None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def model_post_init(self, context: Any) -> None:
        try:
            from llama_cpp import Llama
        except ImportError as error:
            raise ImportError(
                "llm.backend llama-cpp needs llama-cpp-python: pip install 'erp-chatbot[llama-cpp]'"
            ) from error
        self._client = Llama(
            self.model_path,
            n_ctx=self.n_ctx,
            n_threads=self.n_threads,
            n_batch=self.n_batch,
            n_gpu_layers=self.n_gpu_layers,
            use_mmap=self.use_mmap,
            seed=self.seed,
            verbose=False,
        )
        if self.prompt_cache_mb:
            # States are saved after each call and the longest matching prefix is restored, so the
            # system prompt and example are not evaluated again when a translation came in between.
            self._client.set_cache(prompt_state_cache(self.prompt_cache_mb << 20))

    @property
    def _llm_type(self) -> str:
        return "llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, **self._options()}

    @property
    def model_id(self) -> str:
        return self.model_path

    def get_num_tokens(self, text: str) -> int:
        return len(self._client.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def _options(self, **overrides: Any) -> dict[str, Any]:
        options = {name: getattr(self, name) for name in _CALL_OPTIONS}
        unknown = set(overrides) - set(_CALL_OPTIONS) - {"stop"}
        if unknown:
            raise TypeError(f"unknown llama.cpp call options {sorted(unknown)}; use {', '.join(_CALL_OPTIONS)}")
        return {**options, **overrides}

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop=stop, run_manager=run_manager, **kwargs))

    def yes_probability(self, messages: list[BaseMessage]) -> float:
        """P(yes) of the model's reply to a yes-or-no question: the softmax of the first reply token's
        logits over "yes"/"Yes" against "no"/"No". One prompt evaluation and no decoding; llama.cpp
        gives no log-probabilities without keeping every position's logits (``logits_all``), so
        they are read where the sampler sees them."""
        import numpy as np
        from llama_cpp import LogitsProcessorList

        seen: list[Any] = []

        def keep(_: Any, logits: Any) -> Any:
            if not seen:
                seen.append(np.array(logits[self._answer_tokens], dtype="float64"))
            return logits

        with self._lock:
            self._client.create_chat_completion(
                messages=self._chat(messages), max_tokens=1, temperature=0, logits_processor=LogitsProcessorList([keep])
            )
        weights = np.exp(seen[0] - seen[0].max())
        return float(weights[:2].sum() / weights.sum())

    @functools.cached_property
    def _answer_tokens(self) -> list[int]:
        """The token ids of "yes", "Yes", "no", "No" (each one token in the chat models served)."""
        return [self._client.tokenize(word.encode(), add_bos=False, special=False)[0] for word in _YES_NO]

    def _chat(self, messages: list[BaseMessage]) -> list[dict[str, str]]:
        return [{"role": _ROLES.get(m.type, "user"), "content": defuse_control_tokens(m.text)} for m in messages]

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self._lock:
            for part in self._client.create_chat_completion(
                messages=self._chat(messages), stream=True, stop=stop or [], **self._options(**kwargs)
            ):
                choice = part["choices"][0]
                text = choice["delta"].get("content") or ""
                finish = choice.get("finish_reason")
                if not text and not finish:
                    continue
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(content=text),
                    generation_info={"finish_reason": finish} if finish else None,
                )
                if run_manager and text:
                    run_manager.on_llm_new_token(text, chunk=chunk)
                yield chunk


def prompt_state_cache(capacity_bytes: int) -> Any:
    """llama-cpp-python's RAM cache of prompt states, each stored without its logits copy.

    Every saved state carries a copy of the logits buffer (``n_batch`` rows of vocabulary floats:
    78 MB for Qwen at 128, against ~20 MB of evaluated context for a 700-token prompt), which
    upstream's bound does not count, so a "512 MB" cache grew to 5.6 GB serving 16 clients
    (bench/README.md). Those logits are never read: ``Llama.generate`` evaluates a restored prompt
    again from at least its last token. So a state keeps one row (what ``load_state`` needs to
    fill the buffer) and the bound counts what a state really holds: about five times as many
    prompt prefixes fit in the same memory.
    """
    from llama_cpp import LlamaRAMCache

    class PromptStateCache(LlamaRAMCache):
        @property
        def cache_size(self) -> int:
            return sum(
                state.llama_state_size + state.scores.nbytes + state.input_ids.nbytes
                for state in self.cache_state.values()
            )

        def __setitem__(self, key: Any, state: Any) -> None:
            state.scores = state.scores[-1:].copy()
            super().__setitem__(key, state)

    return PromptStateCache(capacity_bytes=capacity_bytes)


def defuse_control_tokens(text: str) -> str:
    """``<|im_start|>`` -> ``<\u2060|im_start|>``: same look, plain text to the tokenizer."""
    return _CONTROL_TOKEN.sub(lambda m: "<\u2060|" + m.group(1) + "|>", text)


def build_llama_cpp(gguf: Path, settings: LLMSettings, on_gpu: bool = False) -> LlamaCppChat:
    """Load ``gguf`` with the decoding settings; temperature 0 means greedy decoding.

    ``on_gpu``: offload every layer (a llama-cpp-python built with CUDA uses the GPUs then).
    """
    if not gguf.is_file() or gguf.suffix != ".gguf":
        raise FileNotFoundError(
            f"no GGUF model at {gguf}; with llm.backend llama-cpp, set llm.model_path to a .gguf file, "
            "or leave it unset for the demo model"
        )
    return LlamaCppChat(
        model_path=str(gguf),
        n_ctx=settings.context_tokens,
        # llama-cpp-python's default is half the cores: decoding then runs ~30% slower here. The
        # cores this process may run on, not the machine's: two threads on one core (a container's
        # cpuset, taskset) wait for each other at every step of every layer.
        n_threads=settings.cpu_threads or len(os.sched_getaffinity(0)),
        max_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        top_p=settings.top_p,
        repeat_penalty=settings.repetition_penalty,
        n_batch=settings.prompt_batch_tokens,
        prompt_cache_mb=settings.prompt_cache_mb,
        n_gpu_layers=-1 if on_gpu else 0,
    )
