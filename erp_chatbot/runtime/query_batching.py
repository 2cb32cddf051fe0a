"""Query-embedding batching: concurrent retrievals share query-encoder calls.

A query that finds the encoder idle is encoded at once, in its caller's thread, with no wait;
queries that arrive while it runs are encoded together in the next call. An encoder call of a few
short queries costs little more than one, so a burst of retrievals is served in a few calls
instead of one each. Each caller keeps its own result and error: a failed call is retried one
caller at a time.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)
_RECENT_CALLS = 1024  # call sizes kept for tests and benchmarks; a server runs for months


@dataclass
class _Queries:
    texts: list[str]
    turn: threading.Event = field(default_factory=threading.Event)  # set: done, or this caller's turn to encode
    vectors: list[list[float]] | None = None
    error: BaseException | None = None


class QueryEmbeddingBatcher:
    """Encodes the queries of concurrent callers in shared calls of up to ``batch_size`` texts.

    No thread of its own: the caller that finds the encoder idle encodes the waiting queries, in
    arrival order, until its own are done, then hands the turn to the next caller still waiting.
    One encoder call at a time: on a CPU, concurrent calls only compete for the same cores.
    """

    def __init__(self, encode: Callable[[list[str]], list[list[float]]], batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.encode, self.batch_size = encode, batch_size
        self._waiting: list[_Queries] = []
        self._busy = False
        self._lock = threading.Lock()
        self.batch_sizes: deque[int] = deque(maxlen=_RECENT_CALLS)  # texts per recent encoder call

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The vectors of ``texts``, in order; blocks until they are encoded."""
        pieces = [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        return [vector for piece in pieces for vector in self._embed(piece)]

    def _embed(self, texts: list[str]) -> list[list[float]]:
        """At most ``batch_size`` texts, possibly encoded with other callers' in one call."""
        request = _Queries(texts)
        with self._lock:
            self._waiting.append(request)
        while request.vectors is None and request.error is None:
            batch = self._claim()
            if batch is None:
                request.turn.wait()
                request.turn.clear()
                continue
            try:
                self._run(batch)
            finally:
                self._release()
        if request.error is not None:
            raise request.error
        return request.vectors

    def _claim(self) -> list[_Queries] | None:
        """The waiting requests that fit one call (at least the first); None while another caller
        encodes, or when nothing waits (the caller's own queries were encoded meanwhile)."""
        with self._lock:
            if self._busy or not self._waiting:
                return None
            self._busy = True
            batch, size = [], 0
            while self._waiting and size + len(self._waiting[0].texts) <= self.batch_size:
                batch.append(self._waiting.pop(0))
                size += len(batch[-1].texts)
            return batch

    def _release(self) -> None:
        with self._lock:
            self._busy = False
            if self._waiting:
                self._waiting[0].turn.set()

    def _run(self, batch: list[_Queries]) -> None:
        texts = [text for request in batch for text in request.texts]
        self.batch_sizes.append(len(texts))
        try:
            vectors = self.encode(texts)
            for request in batch:
                request.vectors, vectors = vectors[: len(request.texts)], vectors[len(request.texts) :]
        except Exception as error:
            if len(batch) == 1:
                batch[0].error = error
            else:
                logger.warning("an encoder call of %d queries failed (%s); retrying them one by one", len(texts), error)
                for request in batch:
                    try:
                        request.vectors = self.encode(request.texts)
                    except Exception as single_error:
                        request.error = single_error
        finally:
            for request in batch:
                request.turn.set()
