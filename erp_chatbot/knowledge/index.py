"""The FAISS index on disk: a manifest, checksums, atomic replacement, and true cosine scores.

Layout of an index folder::

    <index_dir>/current -> generations/<n>     (a symlink, swapped atomically)
    <index_dir>/generations/<n>/index.faiss, index.pkl, manifest.json

``save_local`` does not record the distance strategy and ``load_local`` unpickles, so the manifest
records the strategy, the embedding model and a sha256 per file (the BM25 files included), and
loading checks every file against it before anything is unpickled.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from erp_chatbot.knowledge.access import EVERYONE
from erp_chatbot.knowledge.lexical import ANALYZER, LexicalIndex
from erp_chatbot.knowledge.splitting import indexed_text

if TYPE_CHECKING:
    import numpy as np
    from langchain_community.vectorstores import FAISS


def _langchain_faiss() -> tuple[Any, Any, Any]:
    """LangChain's FAISS store, its distance enum and docstore.

    The store the design names (``save_local``/``load_local``) lives only in langchain-community,
    whose package import announces its sunset with a DeprecationWarning attributed to the importer.
    That notice is about the package, not about an API we call, so it is filtered here, once.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*langchain-community.* is being sunset", category=DeprecationWarning
        )
        from langchain_community.docstore.in_memory import InMemoryDocstore
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy
    return FAISS, DistanceStrategy, InMemoryDocstore


MANIFEST = "manifest.json"
INDEX_FILES = ("index.faiss", "index.pkl")
STRATEGY = "MAX_INNER_PRODUCT"  # on unit vectors the inner product is the cosine
# 2: every chunk carries its access roles; 3: a BM25 index beside FAISS; 4: plain-text pages are
# titled by their underlined heading (chunks start with their title, so they change too); 5: the
# embedding and BM25 read the page's path words too (splitting.indexed_text); 6: chunks are whole
# sections or their paragraphs, with the heading path (splitting.sections)
FORMAT_VERSION = 6


class KnowledgeIndexError(RuntimeError):
    """The index is missing, foreign or damaged; the message says what to run."""


@dataclass
class FileRecord:
    sha256: str
    chunk_ids: list[str]
    roles: list[str] = field(default_factory=list)  # from the folder's access mapping


@dataclass
class Manifest:
    embedding_model: str
    dimension: int
    distance_strategy: str
    chunk_size: int
    chunk_overlap: int
    files: dict[str, FileRecord] = field(default_factory=dict)
    checksums: dict[str, str] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    format_version: int = FORMAT_VERSION
    signature: str = ""

    def signed(self, key: str) -> str:
        """HMAC-SHA256 of the manifest (signature left out) under the deployment's key."""
        data = asdict(self)
        data.pop("signature")
        canonical = json.dumps(data, sort_keys=True, ensure_ascii=False).encode()
        return hmac.new(key.encode(), canonical, hashlib.sha256).hexdigest()

    @property
    def document_count(self) -> int:
        return len(self.files)

    @property
    def chunk_count(self) -> int:
        return sum(len(record.chunk_ids) for record in self.files.values())

    def to_json(self) -> str:
        data = asdict(self)
        data.update(document_count=self.document_count, chunk_count=self.chunk_count)
        return json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        data.pop("document_count", None)
        data.pop("chunk_count", None)
        data["files"] = {name: FileRecord(**record) for name, record in data.get("files", {}).items()}
        return cls(**data)


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


def new_store(embeddings: Embeddings, dimension: int) -> FAISS:
    import faiss

    FAISS, DistanceStrategy, InMemoryDocstore = _langchain_faiss()
    return FAISS(
        embedding_function=embeddings,
        index=faiss.IndexFlatIP(dimension),
        docstore=InMemoryDocstore(),
        index_to_docstore_id={},
        distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT,
    )


def current_path(index_dir: Path) -> Path:
    return index_dir / "current"


def exists(index_dir: Path) -> bool:
    return (current_path(index_dir) / MANIFEST).is_file()


def read_manifest(index_dir: Path) -> Manifest:
    path = current_path(index_dir) / MANIFEST
    if not path.is_file():
        raise KnowledgeIndexError(f"no knowledge index at {index_dir}; build one with: erp-chatbot ingest <folder>")
    return Manifest.from_json(path.read_text(encoding="utf-8"))


def signed_with(manifest: Manifest, signing_key: str) -> bool:
    return hmac.compare_digest(manifest.signature, manifest.signed(signing_key))


def load(
    index_dir: Path,
    embeddings: Embeddings,
    faiss_gpu: int | None = None,
    signing_key: str | None = None,
    stale_terms_ok: bool = False,
) -> KnowledgeIndex:
    """Verify the manifest's signature (when a key is set: every load from settings sets one,
    ``knowledge.signing``) and the files' checksums, then load.

    ``load_local`` unpickles ``index.pkl``; nothing is unpickled before these checks pass. BM25
    terms from an older analyzer are refused unless ``stale_terms_ok`` (ingestion, which redoes them).
    """
    FAISS, DistanceStrategy, _ = _langchain_faiss()

    manifest = read_manifest(index_dir)
    if manifest.format_version != FORMAT_VERSION:
        raise KnowledgeIndexError(
            f"the index at {index_dir} has format {manifest.format_version}, this erp-chatbot reads "
            f"{FORMAT_VERSION}; rebuild it with: erp-chatbot ingest <folder>"
        )
    if signing_key and not signed_with(manifest, signing_key):
        raise KnowledgeIndexError(
            f"the manifest of {index_dir} is not signed with this deployment's key (knowledge.signing_key); "
            "it was not written by this erp-chatbot. Rebuild it with: erp-chatbot ingest <folder>"
        )
    folder = current_path(index_dir).resolve()
    unlisted = sorted(set(_index_files(folder)) - set(manifest.checksums))
    if unlisted:
        raise KnowledgeIndexError(
            f"{folder} holds files its manifest does not list ({', '.join(unlisted)}); the index was changed "
            "outside erp-chatbot. Rebuild it with: erp-chatbot ingest <folder>"
        )
    for name in sorted({*INDEX_FILES, *manifest.checksums}):
        expected = manifest.checksums.get(name)
        if expected is None or not (folder / name).is_file() or sha256_file(folder / name) != expected:
            raise KnowledgeIndexError(
                f"{folder / name} does not match its manifest checksum; the index was changed "
                "outside erp-chatbot. Rebuild it with: erp-chatbot ingest <folder>"
            )
    store = FAISS.load_local(
        str(folder),
        embeddings,
        distance_strategy=DistanceStrategy[manifest.distance_strategy],
        allow_dangerous_deserialization=True,  # checksums verified above
    )
    lexical = LexicalIndex.load(folder)
    if lexical.analyzer != ANALYZER and not stale_terms_ok:
        raise KnowledgeIndexError(
            f"the BM25 terms of {index_dir} come from an older analyzer ({lexical.analyzer}, now {ANALYZER}); "
            "update it with: erp-chatbot ingest <folder>"
        )
    if faiss_gpu is not None:
        _move_to_gpu(store, faiss_gpu)
    return KnowledgeIndex(store=store, manifest=manifest, path=folder, lexical=lexical)


def save(
    index_dir: Path, store: FAISS, manifest: Manifest, lexical: LexicalIndex, signing_key: str | None = None
) -> Path:
    """Write a new generation (FAISS, BM25, manifest) and switch ``current`` to it in one atomic rename."""
    generations = index_dir / "generations"
    generations.mkdir(parents=True, exist_ok=True)
    for folder in (index_dir, generations):
        folder.chmod(0o700)
    target = generations / f"{time.time_ns()}"
    staging = generations / f".{target.name}.tmp"
    store.save_local(str(staging))
    lexical.save(staging)
    manifest.checksums = {name: sha256_file(staging / name) for name in _index_files(staging)}
    manifest.signature = manifest.signed(signing_key) if signing_key else ""
    (staging / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    _owner_only(staging)
    _fsync_dir(staging)
    staging.rename(target)
    link = index_dir / f".current.{os.getpid()}.tmp"
    link.unlink(missing_ok=True)
    link.symlink_to(Path("generations") / target.name)
    os.replace(link, current_path(index_dir))
    _fsync_dir(index_dir, files=False)
    _prune(generations, keep=2)
    return target


def _owner_only(folder: Path) -> None:
    """Files 0600 and folders 0700: an index holds the text of restricted documents."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(0o700 if path.is_dir() else 0o600)


def _index_files(folder: Path) -> list[str]:
    """Every file of a generation but its manifest, as paths relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _prune(generations: Path, keep: int) -> None:
    """Drop leftovers of interrupted saves and all but the newest ``keep`` generations.

    The one before the live generation stays, so a reader that resolved ``current`` just before
    the swap can still finish loading it.
    """
    finished = sorted((p for p in generations.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for child in generations.iterdir():
        if not child.name.isdigit() or child in finished[:-keep]:
            shutil.rmtree(child, ignore_errors=True)


def _fsync_dir(path: Path, files: bool = True) -> None:
    """fsync the folder's files (recursively) and then the folder itself."""
    for child in path.rglob("*") if files else ():
        if child.is_file():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_to_gpu(store: Any, device: int) -> None:
    import faiss

    resources = faiss.StandardGpuResources()
    store.index = faiss.index_cpu_to_gpu(resources, device, store.index)
