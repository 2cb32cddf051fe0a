"""``ERPRetriever``: the k best chunks whose cosine similarity clears the threshold."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, PrivateAttr

from erp_chatbot.knowledge.access import EVERYONE
from erp_chatbot.knowledge.index import KnowledgeIndex


class ERPRetriever(BaseRetriever):
    """Dense retrieval over a ``KnowledgeIndex``.

    Each returned document carries ``score`` (the true cosine similarity), ``source``, ``title``
    and ``roles`` in its metadata, best first. Pass the caller's roles as
    ``invoke(query, roles=[...])`` (``default_roles`` otherwise): chunks they may not read are
    excluded inside the search. Async calls run the search in a worker thread
    (``BaseRetriever``'s default), which suits FAISS's blocking search.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: KnowledgeIndex
    embeddings: Embeddings
    k: int = Field(5, gt=0)
    score_threshold: float = Field(0.7, ge=-1.0, le=1.0)
    query_cache_size: int = Field(1024, ge=0, description="recent query vectors kept (0 = none)")
    default_roles: list[str] = Field(default_factory=lambda: [EVERYONE], description="roles when a call names none")
    _vectors: OrderedDict[str, list[float]] = PrivateAttr(default_factory=OrderedDict)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

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
        vector = self._embed(query)
        hits = self.index.search(vector, k or self.k, self.default_roles if roles is None else roles)
        return [
            Document(page_content=doc.page_content, metadata={**doc.metadata, "score": score}, id=doc.id)
            for doc, score in hits
            if score >= self.score_threshold
        ]

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
