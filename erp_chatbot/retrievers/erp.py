"""``ERPRetriever``: the k best chunks whose cosine similarity clears the threshold."""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from erp_chatbot.knowledge.index import KnowledgeIndex


class ERPRetriever(BaseRetriever):
    """Dense retrieval over a ``KnowledgeIndex``.

    Each returned document carries ``score`` (the true cosine similarity), ``source`` and
    ``title`` in its metadata, best first. Async calls run the search in a worker thread
    (``BaseRetriever``'s default), which suits FAISS's blocking search.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: KnowledgeIndex
    embeddings: Embeddings
    k: int = Field(5, gt=0)
    score_threshold: float = Field(0.7, ge=-1.0, le=1.0)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if not query.strip():
            return []
        vector = self.embeddings.embed_query(query)
        hits = self.index.search(vector, self.k)
        return [
            Document(page_content=doc.page_content, metadata={**doc.metadata, "score": score}, id=doc.id)
            for doc, score in hits
            if score >= self.score_threshold
        ]
