"""Generation batching: concurrent generations share ``model.generate`` calls.

Requests that arrive less than ``max_wait_ms`` apart (up to ``batch_size``, with the same
generation settings) are padded into one batch, so a lone request waits ``max_wait_ms`` at most;
at most ``max_concurrency`` batches run at once. Each request keeps its own stream, result and
error: a batch that fails is retried one request at a time, so one bad request cannot fail the
others. (Query embeddings are batched in ``runtime.query_batching``.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForLLMRun, CallbackManagerForLLMRun
from langchain_core.outputs import Generation, GenerationChunk, LLMResult
from langchain_huggingface import HuggingFacePipeline
from pydantic import PrivateAttr

logger = logging.getLogger(__name__)
_DONE = object()
_RECENT_CALLS = 1024  # batch sizes kept for tests and benchmarks; a server runs for months


@dataclass
class _Request:
    prompt: str
    generation: dict[str, Any]
    put: Callable[[Any], None]  # text pieces, then an exception or _DONE; called from a batch's thread

    @property
    def group(self) -> tuple:
        return tuple(sorted((k, repr(v)) for k, v in self.generation.items()))


class _RowStreamer:
    """A transformers streamer that sends each row's new text to that row's request."""

    def __init__(self, tokenizer: Any, requests: list[_Request]) -> None:
        self.tokenizer, self.requests = tokenizer, requests
        self.tokens: list[list[int]] = [[] for _ in requests]
        self.sent = [0] * len(requests)
        self.finished = [False] * len(requests)
        self.prompt_seen = False
        self.stop_ids = set(_as_list(getattr(tokenizer, "eos_token_id", None)))

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # the first call carries the prompts
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.requests), -1)[:, -1].tolist()):
            if self.finished[row]:
                continue
            if token in self.stop_ids:
                self.finished[row] = True
                continue
            self.tokens[row].append(token)
            self._emit(row, final=False)

    def end(self) -> None:
        for row in range(len(self.requests)):
            self._emit(row, final=True)

    def _emit(self, row: int, final: bool) -> None:
        text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
        if not final and text.endswith("\ufffd"):  # half of a multi-byte character: wait
            return
        if len(text) > self.sent[row]:
            self.requests[row].put(text[self.sent[row] :])
            self.sent[row] = len(text)


def _as_list(value: Any) -> list[int]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


class GenerationBatcher:
    """Gathers prompts into batched ``model.generate`` calls, run on background threads."""

    def __init__(self, model: Any, tokenizer: Any, *, batch_size: int, max_concurrency: int, max_wait_ms: int) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.batch_size, self.max_wait = batch_size, max_wait_ms / 1000
        self.tokenizer.padding_side = "left"  # decoder-only models continue from the right edge
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self._incoming: queue.Queue[_Request] = queue.Queue()
        self._slots = threading.Semaphore(max_concurrency)
        self.batch_sizes: deque[int] = deque(maxlen=_RECENT_CALLS)  # of the latest calls
        threading.Thread(target=self._dispatch, name="erp-batcher", daemon=True).start()

    def submit(self, prompt: str, generation: dict[str, Any]) -> Iterator[str]:
        """Queue one prompt; iterate its generated text as it arrives."""
        arrived: queue.Queue = queue.Queue()
        self._incoming.put(_Request(prompt, generation, arrived.put))
        while (item := arrived.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    async def asubmit(self, prompt: str, generation: dict[str, Any]) -> AsyncIterator[str]:
        """``submit`` for the event loop: waiting holds no thread, so the number of requests in
        flight is not capped by the loop's default executor (CPU count + 4 threads)."""
        loop = asyncio.get_running_loop()
        arrived: asyncio.Queue = asyncio.Queue()

        def put(item: Any) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop closed: nobody waits for it
                loop.call_soon_threadsafe(arrived.put_nowait, item)

        self._incoming.put(_Request(prompt, generation, put))
        while (item := await arrived.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item

    def _dispatch(self) -> None:
        pending: list[_Request] = []  # arrived, but with other settings than the batch being filled
        while True:
            first = pending.pop(0) if pending else self._incoming.get()
            batch = [first]
            for request in list(pending):
                if len(batch) < self.batch_size and request.group == first.group:
                    batch.append(request)
                    pending.remove(request)
            # Fill while requests keep coming: a burst of N clients reaches the queue spread over far
            # more than one wait (each passes through an executor thread and the chat template while
            # a batch holds the GIL), and a fixed deadline split 16 clients into batches of 9, 5, 2.
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.batch_size:
                try:
                    request = self._incoming.get(timeout=max(deadline - time.monotonic(), 0))
                except queue.Empty:
                    break
                if request.group == first.group:
                    batch.append(request)
                    deadline = time.monotonic() + self.max_wait
                else:
                    pending.append(request)
            self._slots.acquire()
            threading.Thread(target=self._run, args=(batch,), daemon=True).start()

    def _run(self, batch: list[_Request]) -> None:
        try:
            self.batch_sizes.append(len(batch))
            self._generate(batch)
        except Exception as error:
            if len(batch) == 1:
                batch[0].put(error)
            else:
                logger.warning("a batch of %d failed (%s); retrying its requests one by one", len(batch), error)
                for request in batch:
                    try:
                        self._generate([request])
                    except Exception as single_error:
                        request.put(single_error)
        finally:
            for request in batch:
                request.put(_DONE)
            self._slots.release()

    def _generate(self, batch: list[_Request]) -> None:
        import torch

        inputs = self.tokenizer([r.prompt for r in batch], return_tensors="pt", padding=True)
        inputs = inputs.to(self.model.device)
        streamer = _RowStreamer(self.tokenizer, batch)
        with torch.inference_mode():
            self.model.generate(
                **inputs, streamer=streamer, pad_token_id=self.tokenizer.pad_token_id, **batch[0].generation
            )
        streamer.end()


class BatchedHuggingFacePipeline(HuggingFacePipeline):
    """``HuggingFacePipeline`` whose calls from many threads are batched by a ``GenerationBatcher``.

    ``generation`` holds the default decoding settings; ``pipeline_kwargs`` passed at call time
    (e.g. through ``bind``) override them for that call, and only equal settings share a batch.
    """

    generation: dict[str, Any]
    max_concurrency: int = 1
    max_wait_ms: int = 10
    _batcher: GenerationBatcher = PrivateAttr()

    def model_post_init(self, context: Any) -> None:
        super().model_post_init(context)
        self._batcher = GenerationBatcher(
            self.pipeline.model,
            self.pipeline.tokenizer,
            batch_size=self.batch_size,
            max_concurrency=self.max_concurrency,
            max_wait_ms=self.max_wait_ms,
        )

    @property
    def batcher(self) -> GenerationBatcher:
        return self._batcher

    def _stream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[GenerationChunk]:
        for text in self._batcher.submit(prompt, self._decoding(kwargs)):
            chunk = GenerationChunk(text=text)
            if run_manager:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk

    def _generate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        decoding = self._decoding(kwargs)
        results: list[str | BaseException] = [""] * len(prompts)

        def drain(index: int) -> None:
            try:
                results[index] = "".join(self._batcher.submit(prompts[index], decoding))
            except Exception as error:
                results[index] = error

        threads = [threading.Thread(target=drain, args=(i,)) for i in range(len(prompts))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return LLMResult(generations=[[Generation(text=text)] for text in results])

    async def _astream(
        self,
        prompt: str,
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[GenerationChunk]:
        async for text in self._batcher.asubmit(prompt, self._decoding(kwargs)):
            chunk = GenerationChunk(text=text)
            if run_manager:
                await run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk

    async def _agenerate(
        self,
        prompts: list[str],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> LLMResult:
        decoding = self._decoding(kwargs)

        async def answer(prompt: str) -> str:
            return "".join([text async for text in self._batcher.asubmit(prompt, decoding)])

        texts = await asyncio.gather(*(answer(prompt) for prompt in prompts))
        return LLMResult(generations=[[Generation(text=text)] for text in texts])

    def _decoding(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**self.generation, **kwargs.get("pipeline_kwargs", {})}
