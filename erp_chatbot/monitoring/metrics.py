"""Model metrics collected through a LangChain callback handler, so library users get them too.

``ChatMetrics`` holds the Prometheus collectors (its own registry, so several chatbots in one
process do not collide); ``MetricsCallbackHandler`` fills them from the callbacks of each request:
inference time by model version, time to first token, tokens/s, outcomes (answered, declined,
cached, error), cache hits and misses, and the best retrieval score. Accuracy comes from evaluation
runs (``record_evaluation``) and from user feedback (``record_feedback``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from erp_chatbot.chains.respond import ANSWER_TAG
from erp_chatbot.monitoring.gpu import GPUCollector

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 10, 20, 30, 60, 120, 300)


class ChatMetrics:
    def __init__(self, gpu: GPUCollector | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.inference = Histogram(
            "erp_inference_seconds", "Time to a complete answer", ["model_version"], buckets=_SECONDS, registry=r
        )
        self.first_token = Histogram(
            "erp_time_to_first_token_seconds",
            "Time to the first streamed token",
            ["model_version"],
            buckets=_SECONDS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            "erp_tokens_per_second",
            "Generation speed",
            ["model_version"],
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
            registry=r,
        )
        self.requests = Counter("erp_requests", "Requests by outcome", ["model_version", "outcome"], registry=r)
        self.errors = Counter("erp_errors", "Failed requests", ["model_version"], registry=r)
        self.cache = Counter("erp_cache_lookups", "Response cache lookups", ["result"], registry=r)
        self.retrieval_score = Histogram(
            "erp_retrieval_top_score",
            "Cosine similarity of the best chunk",
            buckets=(0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0),
            registry=r,
        )
        self.accuracy = Gauge(
            "erp_accuracy", "Accuracy by source (evaluation name or feedback)", ["source"], registry=r
        )
        self.feedback = Counter("erp_feedback", "User feedback on answers", ["vote"], registry=r)
        r.register(gpu or GPUCollector())
        self._votes = {"up": 0, "down": 0}
        self._lock = threading.Lock()

    def record_answer(self, output: dict[str, Any], seconds: float, model_version: str) -> None:
        """One answered request: the chain's output and the seconds it took."""
        self.inference.labels(model_version=model_version).observe(seconds)
        sources = output.get("sources") or []
        if sources:
            self.retrieval_score.observe(sources[0]["score"])
            self.cache.labels(result="hit" if output.get("cached") else "miss").inc()
        outcome = "cached" if output.get("cached") else "answered" if sources else "declined"
        self.requests.labels(model_version=model_version, outcome=outcome).inc()

    def record_evaluation(self, name: str, score: float) -> None:
        self.accuracy.labels(source=name).set(score)

    def load_evaluations(self, scores: dict[str, dict[str, float]]) -> None:
        """Scores recorded by evaluation runs in other processes (``evaluation.record_score``)."""
        for name, entry in scores.items():
            self.record_evaluation(name, entry["value"])

    def record_feedback(self, helpful: bool) -> None:
        vote = "up" if helpful else "down"
        self.feedback.labels(vote=vote).inc()
        with self._lock:
            self._votes[vote] += 1
            self.accuracy.labels(source="feedback").set(self._votes["up"] / sum(self._votes.values()))


class MetricsCallbackHandler(BaseCallbackHandler):
    """Fills ``ChatMetrics`` from one chain's callbacks; thread-safe, keeps nothing after a run."""

    def __init__(self, metrics: ChatMetrics, model_version: Callable[[], str]) -> None:
        self.metrics, self.model_version = metrics, model_version
        self.count_tokens: Callable[[str], int] = lambda text: len(text.split())  # the chatbot sets the model's
        self._roots: dict[UUID, float] = {}
        self._seen: set[UUID] = set()
        self._llm: dict[UUID, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def on_chain_start(
        self, serialized: Any, inputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        with self._lock:
            if parent_run_id not in self._seen:
                self._roots[run_id] = time.perf_counter()
            self._seen.add(run_id)

    def on_chain_end(self, outputs: Any, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._seen.discard(run_id)
            started = self._roots.pop(run_id, None)
        if started is None or not isinstance(outputs, dict):
            return
        self.metrics.record_answer(outputs, time.perf_counter() - started, self.model_version())

    def on_chain_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        with self._lock:
            self._seen.discard(run_id)
            root = self._roots.pop(run_id, None) is not None
        if root:
            version = self.model_version()
            self.metrics.errors.labels(model_version=version).inc()
            self.metrics.requests.labels(model_version=version, outcome="error").inc()

    def on_chat_model_start(self, serialized: Any, messages: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._llm_start(run_id, kwargs.get("tags"))

    def on_llm_start(self, serialized: Any, prompts: Any, *, run_id: UUID, **kwargs: Any) -> None:
        self._llm_start(run_id, kwargs.get("tags"))

    def on_llm_new_token(self, token: str, *, run_id: UUID, **kwargs: Any) -> None:
        state = self._llm.get(run_id)
        if state is not None and state["first"] is None:
            state["first"] = time.perf_counter()
            self.metrics.first_token.labels(model_version=self.model_version()).observe(state["first"] - state["start"])

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        state = self._llm.pop(run_id, None)
        if state is None:
            return
        text = "".join(g.text for generations in response.generations for g in generations)
        elapsed = time.perf_counter() - state["start"]
        if text and elapsed > 0:
            rate = self.count_tokens(text) / elapsed
            self.metrics.tokens_per_second.labels(model_version=self.model_version()).observe(rate)

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        self._llm.pop(run_id, None)

    def _llm_start(self, run_id: UUID, tags: list[str] | None) -> None:
        if tags and ANSWER_TAG in tags:
            self._llm[run_id] = {"start": time.perf_counter(), "first": None}
