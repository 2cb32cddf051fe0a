"""Incremental ingestion: only files whose content changed are re-embedded.

The manifest keeps each file's sha256, chunk ids and mapped access roles (a file whose roles
changed in ``.access.yaml`` is re-indexed too). A run loads the live index, deletes the chunks of
edited and deleted files, embeds the chunks of new and edited files in batches, rebuilds the BM25
index over all chunks (see ``lexical``), and saves a new generation that replaces the old one
atomically (see ``index.save``): a crash mid-run leaves the previous index loadable.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from erp_chatbot.knowledge import index as index_store
from erp_chatbot.knowledge.access import AccessRules
from erp_chatbot.knowledge.injection import instruction_sentences
from erp_chatbot.knowledge.lexical import ANALYZER
from erp_chatbot.knowledge.loaders import iter_files, load_file
from erp_chatbot.knowledge.manifest import FileRecord, Manifest
from erp_chatbot.knowledge.search_index import build_lexical
from erp_chatbot.knowledge.splitting import indexed_text, split_documents
from erp_chatbot.settings import Settings

if TYPE_CHECKING:
    from langchain_community.vectorstores import FAISS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestReport:
    added: list[str]
    updated: list[str]
    deleted: list[str]
    unchanged: int
    chunks_embedded: int
    chunks_total: int
    generation: Path | None
    instruction_like: list[str] = field(default_factory=list)  # "source: sentence" of the new chunks

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.deleted)


def ingest(
    source_dir: Path,
    index_dir: Path,
    embeddings: Embeddings,
    *,
    embedding_model: str,
    chunk_size: int,
    chunk_overlap: int,
    batch_size: int = 32,
    progress: bool = True,
    signing_key: str | None = None,
) -> IngestReport:
    """Bring the index at ``index_dir`` in line with the documents under ``source_dir``."""
    files = {path.relative_to(source_dir).as_posix(): path for path in iter_files(source_dir)}
    hashes = {name: index_store.sha256_file(path) for name, path in files.items()}
    rules = AccessRules.read(source_dir)
    roles = {name: rules.roles_for(name) for name in files}
    previous = _previous(index_dir, embeddings, embedding_model, chunk_size, chunk_overlap, signing_key)
    old_files = previous.manifest.files if previous else {}

    added, updated, deleted = _changes(hashes, roles, old_files)
    unchanged = len(hashes) - len(added) - len(updated)
    stale_terms = previous is not None and previous.lexical.analyzer != ANALYZER
    if previous and not (added or updated or deleted or stale_terms):
        return IngestReport([], [], [], unchanged, 0, previous.manifest.chunk_count, None)

    chunks = split_documents(
        [doc for name in [*added, *updated] for doc in load_file(files[name], source_dir, roles[name])],
        chunk_size,
        chunk_overlap,
    )
    instruction_like = _mark_instructions(chunks)
    vectors = embed_in_batches(embeddings, [indexed_text(c) for c in chunks], batch_size, progress)
    dimension = len(vectors[0]) if vectors else (previous.manifest.dimension if previous else _probe(embeddings))

    store = previous.store if previous else index_store.new_store(embeddings, dimension)
    _replace_chunks(store, [cid for name in [*updated, *deleted] for cid in old_files[name].chunk_ids], chunks, vectors)
    manifest = Manifest(
        embedding_model=embedding_model,
        dimension=dimension,
        distance_strategy=index_store.STRATEGY,
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        files={name: old_files[name] for name in hashes if name in old_files and name not in updated},
    )
    for name in [*added, *updated]:
        ids = [c.metadata["chunk_id"] for c in chunks if c.metadata["source"] == name]
        manifest.files[name] = FileRecord(sha256=hashes[name], chunk_ids=ids, roles=roles[name])
    lexical = build_lexical(store, previous.lexical if previous else None)
    generation = index_store.save(index_dir, store, manifest, lexical, signing_key)
    report = IngestReport(
        added, updated, deleted, unchanged, len(chunks), manifest.chunk_count, generation, instruction_like
    )
    for found in instruction_like:
        logger.warning("a passage speaks to the assistant (kept out of answers): %s", found)
    return report


def _changes(
    hashes: dict[str, str], roles: dict[str, list[str]], old_files: dict[str, FileRecord]
) -> tuple[list[str], list[str], list[str]]:
    """Added, updated (new content or new roles) and deleted files, against the previous manifest."""
    added = sorted(name for name in hashes if name not in old_files)
    updated = sorted(
        name
        for name in hashes
        if name in old_files and (old_files[name].sha256, old_files[name].roles) != (hashes[name], roles[name])
    )
    deleted = sorted(name for name in old_files if name not in hashes)
    return added, updated, deleted


def _replace_chunks(store: FAISS, stale: list[str], chunks: list[Document], vectors: list[list[float]]) -> None:
    """Take the chunks of changed and deleted files out of ``store`` and add the new ones."""
    if stale:
        store.delete(stale)
    if chunks:
        store.add_embeddings(
            list(zip([c.page_content for c in chunks], vectors, strict=True)),
            metadatas=[c.metadata for c in chunks],
            ids=[c.metadata["chunk_id"] for c in chunks],
        )


def _mark_instructions(chunks: list) -> list[str]:
    """Mark chunks holding text that speaks to the assistant (``knowledge.injection``); say where."""
    found = []
    for chunk in chunks:
        said = instruction_sentences(chunk.page_content)
        chunk.metadata["instruction_like"] = bool(said)
        found += [f"{chunk.metadata['source']}: {sentence[:120]}" for sentence in said]
    return found


def ingest_with_settings(
    settings: Settings, source_dir: Path, index_dir: Path | None = None, progress: bool = False
) -> IngestReport:
    """``ingest`` as ``settings`` say: their embedding model and chunking, signed with the
    deployment's key (``knowledge.signing``; made on first use)."""
    from erp_chatbot.devices import detect_gpus, plan_devices
    from erp_chatbot.knowledge.signing import signing_key
    from erp_chatbot.models.embeddings import embeddings_path, load_embeddings

    device = plan_devices(settings, detect_gpus()).embeddings_device
    return ingest(
        source_dir,
        index_dir or settings.index_dir,
        load_embeddings(settings, device),
        embedding_model=embeddings_path(settings).name,
        chunk_size=settings.knowledge.chunk_size,
        chunk_overlap=settings.knowledge.chunk_overlap,
        batch_size=settings.embeddings.batch_size,
        progress=progress,
        signing_key=signing_key(settings, create=True),
    )


def embed_in_batches(embeddings: Embeddings, texts: list[str], batch_size: int, progress: bool) -> list[list[float]]:
    from tqdm.auto import tqdm

    vectors: list[list[float]] = []
    bar: Callable = tqdm if progress else (lambda iterable, **_: iterable)
    for start in bar(range(0, len(texts), batch_size), desc="embedding", unit="batch"):
        vectors.extend(embeddings.embed_documents(texts[start : start + batch_size]))
    return vectors


def _previous(
    index_dir: Path,
    embeddings: Embeddings,
    embedding_model: str,
    chunk_size: int,
    chunk_overlap: int,
    signing_key: str | None,
) -> index_store.KnowledgeIndex | None:
    """The live index, or None when there is none or it was built with other settings."""
    if not index_store.exists(index_dir):
        return None
    manifest = index_store.read_manifest(index_dir)
    same = (manifest.embedding_model, manifest.chunk_size, manifest.chunk_overlap, manifest.format_version) == (
        embedding_model,
        chunk_size,
        chunk_overlap,
        index_store.FORMAT_VERSION,
    )
    if not same:
        logger.warning("embedding model, chunking or index format changed since the last ingest: rebuilding")
        return None
    if signing_key and not index_store.signed_with(manifest, signing_key):
        logger.warning("the index in %s is not signed with this deployment's key: rebuilding it", index_dir)
        return None
    return index_store.load(index_dir, embeddings, signing_key=signing_key, stale_terms_ok=True)


def _probe(embeddings: Embeddings) -> int:
    return len(embeddings.embed_query("dimension probe"))
