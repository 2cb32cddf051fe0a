"""``ERPRetriever``: the k best chunks (dense and BM25, fused) whose cosine similarity clears the threshold."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from erp_chatbot.knowledge.access import EVERYONE
from erp_chatbot.knowledge.index import KnowledgeIndex
from erp_chatbot.retrievers.fusion import Fusion, fuse
from erp_chatbot.settings import Settings


class ERPRetriever(BaseRetriever):
    """Hybrid retrieval over a ``KnowledgeIndex``: FAISS (dense) and BM25 (sparse), fused.

    Each side proposes ``candidates`` chunks; ``fusion`` ranks their union (``mode`` picks one side
    alone instead). Each returned document carries ``score`` (its true cosine similarity to the
    question, whichever side found it), ``bm25`` (when BM25 found it), ``source``, ``title`` and
    ``roles`` in its metadata, best first; chunks under ``score_threshold`` are dropped. Pass the
    caller's roles as ``invoke(query, roles=[...])`` (``default_roles`` otherwise): chunks they may
    not read are excluded inside both searches. Async calls run in a worker thread
    (``BaseRetriever``'s default), which suits the blocking searches.
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
    rrf_k: int = Field(60, gt=0)
    query_cache_size: int = Field(1024, ge=0, description="recent query vectors kept (0 = none)")
    default_roles: list[str] = Field(default_factory=lambda: [EVERYONE], description="roles when a call names none")
    _vectors: OrderedDict[str, list[float]] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_settings(cls, index: KnowledgeIndex, embeddings: Embeddings, settings: Settings) -> ERPRetriever:
        retrieval = settings.retrieval
        return cls(
            index=index,
            embeddings=embeddings,
            default_roles=settings.access.default_roles,
            **retrieval.model_dump(include=set(cls.model_fields) & set(type(retrieval).model_fields)),
        )

    def _get_relevant_documents(
        self,
        query: str,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        roles: Sequence[str] | None = None,
        k: int | None = None,
    ) -> list[Document]:
        if not query.strip():
            return []
        roles = self.default_roles if roles is None else roles
        vector = self._embed(query)
        depth = max(self.candidates, k or self.k)
        dense = self.index.search(vector, depth, roles) if self.mode != "sparse" else []
        sparse = self.index.search_lexical(query, depth, roles) if self.mode != "dense" else []
        found = {doc.id: doc for doc, _ in [*dense, *sparse]}
        cosine = self._complete(dict((d.id, s) for d, s in dense), found, lambda docs: self.index.cosines(vector, docs))
        bm25 = dict((d.id, s) for d, s in sparse)
        if self.mode == "hybrid":
            scores, bm25_distribution = self.index.bm25_scores(query, list(found.values()))
            bm25 = dict(zip(found, scores, strict=True))
            distributions = [self.index.cosine_distribution(vector), bm25_distribution]
            weights = [self.dense_weight, self.sparse_weight]
            order = fuse([cosine, bm25], weights, self.fusion, self.rrf_k, distributions)
        else:
            order = [d.id for d, _ in (dense or sparse)]
        kept = [doc_id for doc_id in order if cosine[doc_id] >= self.score_threshold][: k or self.k]
        return [self._hit(found[doc_id], cosine[doc_id], bm25.get(doc_id)) for doc_id in kept]

    @staticmethod
    def _complete(
        scores: dict[str, float], found: dict[str, Document], score: Callable[[list[Document]], list[float]]
    ) -> dict[str, float]:
        """``scores`` for every found chunk: those one side did not propose are scored by it now."""
        missing = [doc for doc_id, doc in found.items() if doc_id not in scores]
        return {**scores, **dict(zip([d.id for d in missing], score(missing), strict=True))} if missing else scores

    @staticmethod
    def _hit(doc: Document, cosine: float, bm25: float | None) -> Document:
        metadata = {**doc.metadata, "score": cosine}
        if bm25 is not None:
            metadata["bm25"] = bm25
        return Document(page_content=doc.page_content, metadata=metadata, id=doc.id)

    def _embed(self, query: str) -> list[float]:
        """Embed the query, remembering recent ones: repeated questions skip the encoder."""
        with self._lock:
            if query in self._vectors:
                self._vectors.move_to_end(query)
                return self._vectors[query]
        vector = self.embeddings.embed_query(query)
        if self.query_cache_size:
            with self._lock:
                self._vectors[query] = vector
                while len(self._vectors) > self.query_cache_size:
                    self._vectors.popitem(last=False)
        return vector
