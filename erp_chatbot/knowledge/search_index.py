"""``KnowledgeIndex``: a loaded index searched by meaning (FAISS) and by words (BM25), within the
caller's roles, with true cosine scores and whole sections."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

from erp_chatbot.knowledge.access import EVERYONE
from erp_chatbot.knowledge.lexical import LexicalIndex
from erp_chatbot.knowledge.manifest import KnowledgeIndexError, Manifest
from erp_chatbot.knowledge.splitting import indexed_text

if TYPE_CHECKING:
    import numpy as np
    from langchain_community.vectorstores import FAISS


class KnowledgeIndex:
    """A loaded FAISS store together with the manifest that describes it."""

    def __init__(self, store: FAISS, manifest: Manifest, path: Path, lexical: LexicalIndex | None = None) -> None:
        self.store = store
        self.manifest = manifest
        self.path = path
        self.lexical = lexical
        self._rows_by_role, self._public_rows = _rows_by_role(store)
        if lexical is not None and lexical.chunk_ids != _chunk_ids_in_row_order(store):
            raise KnowledgeIndexError(f"the BM25 index in {path} does not match its FAISS index; rebuild it")

    @property
    def version(self) -> str:
        """Changes whenever the index files change (from the manifest's checksums)."""
        material = json.dumps(self.manifest.checksums, sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:16]

    def search(
        self, query_vector: list[float], k: int, roles: Iterable[str] = (EVERYONE,)
    ) -> list[tuple[Document, float]]:
        """The k nearest chunks ``roles`` may read, with their cosine similarity to ``query_vector``.

        Chunks the caller may not read are excluded inside the FAISS search (an ID selector), not
        dropped afterwards: the k results are the best k the caller may see.
        """
        import numpy as np

        allowed = self.readable_rows(roles)
        if self.store.index.ntotal == 0 or (allowed is not None and allowed.size == 0):
            return []
        query = np.asarray([query_vector], dtype="float32")
        if allowed is None:
            raw_scores, rows = self.store.index.search(query, k)
        else:
            raw_scores, rows = self.store.index.search(query, k, params=_selecting(allowed))
        hits = []
        for row, raw in zip(rows[0], raw_scores[0], strict=True):
            if row < 0:
                continue
            doc = self.store.docstore.search(self.store.index_to_docstore_id[int(row)])
            hits.append((doc, cosine_from_distance(self.manifest.distance_strategy, float(raw))))
        return hits

    def search_lexical(self, query: str, k: int, roles: Iterable[str] = (EVERYONE,)) -> list[tuple[Document, float]]:
        """The k best chunks ``roles`` may read by BM25, with their BM25 scores (masked before ranking)."""
        allowed = self.readable_rows(roles)
        if allowed is not None and allowed.size == 0:
            return []
        hits = self._bm25.search(query, k, allowed)
        return [(self.store.docstore.search(chunk_id), score) for chunk_id, score in hits]

    def cosines(self, query_vector: list[float], documents: Iterable[Document]) -> list[float]:
        """Cosine similarity of each indexed chunk to ``query_vector`` (for hits found by BM25)."""
        import numpy as np

        query = np.asarray(query_vector, dtype="float32")
        rows = [self._row_of_chunk[doc.id] for doc in documents]
        return [float(self.store.index.reconstruct(row) @ query) for row in rows]

    def bm25_scores(self, query: str, documents: Iterable[Document]) -> tuple[list[float], tuple[float, float]]:
        """BM25 score of each chunk for ``query``, and the mean and deviation over all chunks."""
        return self._bm25.scores(query, [self._row_of_chunk[doc.id] for doc in documents])

    @property
    def _bm25(self) -> LexicalIndex:
        if self.lexical is None:
            raise KnowledgeIndexError(f"the index at {self.path} has no BM25 index; rebuild it with erp-chatbot ingest")
        return self.lexical

    def cosine_distribution(self, query_vector: list[float]) -> tuple[float, float]:
        """Mean and deviation of the cosine of ``query_vector`` over all chunks, from the vectors' moments."""
        import numpy as np

        mean, covariance = self._moments
        query = np.asarray(query_vector, dtype="float64")
        return float(query @ mean), float(np.sqrt(max(query @ covariance @ query, 0.0)))

    @functools.cached_property
    def _moments(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean vector and covariance of the indexed vectors, in blocks (computed once)."""
        import numpy as np

        index, block = self.store.index, 8192
        total = np.zeros(index.d)
        outer = np.zeros((index.d, index.d))
        for start in range(0, index.ntotal, block):
            vectors = index.reconstruct_n(start, min(block, index.ntotal - start)).astype("float64")
            total += vectors.sum(axis=0)
            outer += vectors.T @ vectors
        mean = total / max(index.ntotal, 1)
        return mean, outer / max(index.ntotal, 1) - np.outer(mean, mean)

    def section(self, chunk: Document) -> list[Document]:
        """Every chunk of ``chunk``'s section, in the document's order (a section's chunks share its
        file's roles, so whoever may read one may read them all)."""
        key = (chunk.metadata.get("source", ""), chunk.metadata.get("section", ""))
        return self._sections.get(key, [chunk])

    @functools.cached_property
    def _sections(self) -> dict[tuple[str, str], list[Document]]:
        found: dict[tuple[str, str], list[Document]] = {}
        for chunk_id in self.store.index_to_docstore_id.values():
            chunk = self.store.docstore.search(chunk_id)
            found.setdefault((chunk.metadata.get("source", ""), chunk.metadata.get("section", "")), []).append(chunk)
        for pieces in found.values():
            pieces.sort(key=lambda piece: piece.metadata.get("chunk_index", 0))
        return found

    @functools.cached_property
    def _row_of_chunk(self) -> dict[str, int]:
        return {chunk_id: row for row, chunk_id in self.store.index_to_docstore_id.items()}

    def readable_rows(self, roles: Iterable[str]) -> np.ndarray | None:
        """FAISS rows ``roles`` may read; None when that is every row."""
        return self._readable_rows(frozenset(roles))

    @functools.lru_cache(maxsize=256)  # noqa: B019 - per role set, for the index's lifetime
    def _readable_rows(self, roles: frozenset[str]) -> np.ndarray | None:
        import numpy as np

        if EVERYONE in roles or not self._rows_by_role:
            return None
        parts = [self._public_rows, *(self._rows_by_role[r] for r in roles if r in self._rows_by_role)]
        return np.unique(np.concatenate(parts))


def _rows_by_role(store: FAISS) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Which FAISS rows each role may read, and the public rows (chunks without roles)."""
    import numpy as np

    by_role: dict[str, list[int]] = {}
    public: list[int] = []
    for row, doc_id in store.index_to_docstore_id.items():
        roles = store.docstore.search(doc_id).metadata.get("roles") or []
        for role in roles:
            by_role.setdefault(role, []).append(row)
        if not roles:
            public.append(row)
    return {role: np.asarray(rows, dtype="int64") for role, rows in by_role.items()}, np.asarray(public, dtype="int64")


def _chunk_ids_in_row_order(store: FAISS) -> list[str]:
    return [store.index_to_docstore_id[row] for row in range(store.index.ntotal)]


def build_lexical(store: FAISS, previous: LexicalIndex | None = None) -> LexicalIndex:
    """The BM25 index over ``store``'s chunks, in FAISS row order."""
    chunk_ids = _chunk_ids_in_row_order(store)
    texts = [indexed_text(store.docstore.search(c)) for c in chunk_ids]
    return LexicalIndex.build(chunk_ids, texts, previous)


def _selecting(rows: np.ndarray) -> Any:
    import faiss

    return faiss.SearchParameters(sel=faiss.IDSelectorBatch(rows))


def cosine_from_distance(strategy: str, raw: float) -> float:
    """Turn FAISS's raw score for unit vectors into the cosine similarity."""
    if strategy == "MAX_INNER_PRODUCT":
        return float(raw)
    if strategy == "EUCLIDEAN_DISTANCE":  # faiss returns the squared L2 distance
        return float(1.0 - raw / 2.0)
    raise KnowledgeIndexError(f"distance strategy {strategy!r} is not supported; rebuild the index")
