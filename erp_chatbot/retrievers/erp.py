"""``ERPRetriever``: the k best chunks (dense and BM25, fused) whose cosine similarity clears the threshold."""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from erp_chatbot.knowledge.access import EVERYONE
from erp_chatbot.knowledge.index import KnowledgeIndex
from erp_chatbot.retrievers.fusion import Fusion, fuse
from erp_chatbot.retrievers.reranker import CrossEncoderReranker
from erp_chatbot.runtime.query_batching import QueryEmbeddingBatcher
from erp_chatbot.settings import Settings


class ERPRetriever(BaseRetriever):
    """Hybrid retrieval over a ``KnowledgeIndex``: FAISS (dense) and BM25 (sparse), fused.

    Each side proposes ``candidates`` chunks per query; every candidate is then scored by every
    side and ``fusion`` ranks them (``mode`` picks one side alone instead). ``invoke(query,
    variants=[...])`` adds other phrasings of the question (e.g. its translation, for pages in
    another language) as further sides. Each returned document carries ``score`` (its true cosine
    similarity to the question, best over the phrasings), ``bm25`` (outside dense mode), ``source``,
    ``title`` and ``roles`` in its metadata, best first; chunks under ``score_threshold`` are
    dropped. Pass the caller's roles as ``invoke(query, roles=[...])`` (``default_roles``
    otherwise): chunks they may not read are excluded inside both searches. Async calls run in a worker thread
    (``BaseRetriever``'s default), which suits the blocking searches. A call's phrasings, and the
    queries of concurrent calls, share encoder calls of up to ``query_batch_size`` texts (through
    the embeddings' ``embed_queries`` where they have it).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: KnowledgeIndex
    embeddings: Embeddings
    k: int = Field(5, gt=0)
    score_threshold: float = Field(0.7, ge=-1.0, le=1.0)
    mode: Literal["hybrid", "dense", "sparse"] = "hybrid"
    fusion: Fusion = "zscore"
    dense_weight: float = Field(1.0, ge=0)
    sparse_weight: float = Field(1.0, ge=0)
    candidates: int = Field(20, gt=0, description="chunks each side proposes before fusion")
    chunks_per_source: int | None = Field(None, gt=0, description="most chunks of one page among the k")
    rrf_k: int = Field(60, gt=0)
    query_cache_size: int = Field(1024, ge=0, description="recent query vectors kept (0 = none)")
    query_batch_size: int = Field(32, gt=0, description="most queries per encoder call (1 = one call each)")
    reranker: CrossEncoderReranker | None = Field(None, description="reorders the fused candidates when set")
    default_roles: list[str] = Field(default_factory=lambda: [EVERYONE], description="roles when a call names none")
    _vectors: OrderedDict[str, list[float]] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _batcher: QueryEmbeddingBatcher = PrivateAttr()

    def model_post_init(self, context: object) -> None:
        super().model_post_init(context)
        encode = getattr(self.embeddings, "embed_queries", None) or self._embed_one_by_one
        self._batcher = QueryEmbeddingBatcher(encode, self.query_batch_size)

    @property
    def batcher(self) -> QueryEmbeddingBatcher:
        return self._batcher

    @classmethod
    def from_settings(
        cls, index: KnowledgeIndex, embeddings: Embeddings, settings: Settings, device: str = "cpu"
    ) -> ERPRetriever:
        retrieval = settings.retrieval
        path = retrieval.reranker_path
        return cls(
            index=index,
            embeddings=embeddings,
            default_roles=settings.access.default_roles,
            query_batch_size=settings.embeddings.batch_size,
            reranker=CrossEncoderReranker(path, device, settings.embeddings.batch_size) if path else None,
            **retrieval.model_dump(include=set(cls.model_fields) & set(type(retrieval).model_fields)),
        )

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        roles: Sequence[str] | None = None,
        k: int | None = None,
        variants: Sequence[str] = (),
    ) -> list[Document]:
        """``variants``: other phrasings of ``query`` (e.g. its translation), searched and fused too."""
        if not query.strip():
            return []
        roles = self.default_roles if roles is None else roles
        queries = [query, *(v for v in variants if v.strip() and v != query)]
        vectors = self._embed(queries)
        depth = max(self.candidates, k or self.k)
        dense = [self.index.search(v, depth, roles) for v in vectors] if self.mode != "sparse" else []
        sparse = [self.index.search_lexical(q, depth, roles) for q in queries] if self.mode != "dense" else []
        found = {doc.id: doc for hits in [*dense, *sparse] for doc, _ in hits}
        if not found:
            return []
        cosines = [dict(zip(found, self.index.cosines(v, found.values()), strict=True)) for v in vectors]
        sides = self._sides(queries, vectors, cosines, found)
        cosine = {doc_id: max(c[doc_id] for c in cosines) for doc_id in found}
        kept = [doc_id for doc_id in self._order(sides, found) if cosine[doc_id] >= self.score_threshold]
        bm25 = [s.scores for s in sides if s.kind == "sparse"]
        hits = [self._hit(found[i], cosine[i], max(b[i] for b in bm25) if bm25 else None) for i in kept]
        if self.reranker:
            hits = self._rerank(query, hits[: self.candidates])
        return self._per_source(hits)[: k or self.k]

    def _per_source(self, hits: list[Document]) -> list[Document]:
        """At most ``chunks_per_source`` chunks of each page, so the k slots reach more pages."""
        if self.chunks_per_source is None:
            return hits
        taken: Counter[str] = Counter()
        kept = []
        for doc in hits:
            source = doc.metadata.get("source", "")
            taken[source] += 1
            if taken[source] <= self.chunks_per_source:
                kept.append(doc)
        return kept

    def _sides(
        self, queries: list[str], vectors: list[list[float]], cosines: list[dict[str, float]], found: dict
    ) -> list[_Side]:
        """Every candidate's score on each side in play, with that side's corpus distribution."""
        sides = []
        if self.mode != "sparse":
            sides += [
                _Side("dense", c, self.index.cosine_distribution(v)) for c, v in zip(cosines, vectors, strict=True)
            ]
        if self.mode != "dense":
            for q in queries:
                scores, distribution = self.index.bm25_scores(q, list(found.values()))
                sides.append(_Side("sparse", dict(zip(found, scores, strict=True)), distribution))
        return sides

    def _order(self, sides: list[_Side], found: dict) -> list[str]:
        if len(sides) == 1:
            return sorted(found, key=lambda doc_id: sides[0].scores[doc_id], reverse=True)
        weight = {"dense": self.dense_weight, "sparse": self.sparse_weight}
        weights = [weight[side.kind] for side in sides]
        return fuse([s.scores for s in sides], weights, self.fusion, self.rrf_k, [s.distribution for s in sides])

    def _rerank(self, query: str, hits: list[Document]) -> list[Document]:
        """The fused candidates reordered by the cross-encoder (score in ``metadata["rerank"]``)."""
        scores = self.reranker.scores(query, [doc.page_content for doc in hits])
        for doc, score in zip(hits, scores, strict=True):
            doc.metadata["rerank"] = score
        return sorted(hits, key=lambda doc: doc.metadata["rerank"], reverse=True)

    @staticmethod
    def _hit(doc: Document, cosine: float, bm25: float | None) -> Document:
        metadata = {**doc.metadata, "score": cosine}
        if bm25 is not None:
            metadata["bm25"] = bm25
        return Document(page_content=doc.page_content, metadata=metadata, id=doc.id)

    def _embed(self, queries: list[str]) -> list[list[float]]:
        """Embed the queries, remembering recent ones: repeated questions skip the encoder."""
        with self._lock:
            known = {q: self._vectors[q] for q in queries if q in self._vectors}
            for query in known:
                self._vectors.move_to_end(query)
        new = [q for q in dict.fromkeys(queries) if q not in known]
        known.update(zip(new, self._batcher.embed(new), strict=True))
        if self.query_cache_size and new:
            with self._lock:
                self._vectors.update((q, known[q]) for q in new)
                while len(self._vectors) > self.query_cache_size:
                    self._vectors.popitem(last=False)
        return [known[q] for q in queries]

    def _embed_one_by_one(self, queries: list[str]) -> list[list[float]]:
        """For embeddings without ``embed_queries``: LangChain's interface embeds one query per call."""
        return [self.embeddings.embed_query(q) for q in queries]


@dataclass(frozen=True)
class _Side:
    kind: Literal["dense", "sparse"]
    scores: dict[str, float]  # every candidate's score on this side
    distribution: tuple[float, float]  # mean and deviation of this side's scores over the whole corpus
