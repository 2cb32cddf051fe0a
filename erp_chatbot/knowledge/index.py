"""The FAISS index on disk: generations swapped atomically, a signed manifest with checksums checked before loading.

Layout of an index folder::

    <index_dir>/current -> generations/<n>     (a symlink, swapped atomically)
    <index_dir>/generations/<n>/index.faiss, index.pkl, manifest.json

``save_local`` does not record the distance strategy and ``load_local`` unpickles, so the manifest
records the strategy, the embedding model and a sha256 per file (the BM25 files included), and
loading checks every file against it before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.embeddings import Embeddings

from erp_chatbot.knowledge.lexical import ANALYZER, LexicalIndex
from erp_chatbot.knowledge.manifest import FORMAT_VERSION, MANIFEST, KnowledgeIndexError, Manifest
from erp_chatbot.knowledge.search_index import KnowledgeIndex

if TYPE_CHECKING:
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


INDEX_FILES = ("index.faiss", "index.pkl")
STRATEGY = "MAX_INNER_PRODUCT"  # on unit vectors the inner product is the cosine


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
