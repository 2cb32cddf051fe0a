"""Document vectors kept on disk, so that evaluating the same corpus again embeds nothing.

Embedding a benchmark's corpus dominates a retrieval evaluation (AutoRAG-ko: 313,000 tokens, minutes
on a 2-core CPU), while what is usually being compared (fusion, BM25, k) needs the same vectors
again. The key covers everything that fixes a vector: the texts, the model's files, how it is
called (prefixes, normalisation, window), the embedding code and the libraries that run it. Vectors
are stored as a plain ``.npy`` array (read without pickle).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
from langchain_core.embeddings import Embeddings

logger = logging.getLogger(__name__)


def cached_vectors(
    embeddings: Embeddings, texts: list[str], cache_dir: Path | None, embed: Callable[[list[str]], list[list[float]]]
) -> list[list[float]]:
    """``embed(texts)`` as float32, or the vectors it gave before for the same texts and embedding model."""
    if cache_dir is None:
        return embed(texts)
    path = cache_dir / f"{_key(embeddings, texts)}.npy"
    if path.is_file():
        logger.info("reusing the vectors of %d texts from %s", len(texts), path)
        return np.load(path, allow_pickle=False).tolist()
    vectors = np.asarray(embed(texts), dtype=np.float32)  # as stored: a reuse gives the same numbers
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.{os.getpid()}.partial.npy")  # one per process: workers may race
    np.save(partial, vectors, allow_pickle=False)
    partial.replace(path)  # whole or absent: a run stopped while writing leaves no half file behind
    return vectors.tolist()


def _key(embeddings: Embeddings, texts: list[str]) -> str:
    material = json.dumps({"texts": _digest(texts), "model": _model_identity(embeddings)}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def _digest(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text.encode()).digest())
    return digest.hexdigest()


def _model_identity(embeddings: Embeddings) -> dict:
    """The model's files (name, size, modification time), its call settings, the embedding code and
    the versions of the libraries that compute the vectors."""
    folder = Path(str(getattr(embeddings, "model_name", "")))
    client = getattr(embeddings, "_client", None)
    return {
        "folder": str(folder),
        "files": _files(folder),
        "encode": getattr(embeddings, "encode_kwargs", None),
        "window": getattr(client, "max_seq_length", None),
        "code": [
            inspect.getsource(cls)
            for cls in type(embeddings).__mro__
            if cls.__module__.startswith(("erp_chatbot", "langchain_huggingface"))
        ],
        "libraries": {name: _version(name) for name in ("sentence-transformers", "torch", "transformers")},
    }


def _files(folder: Path) -> list[tuple[str, int, int]]:
    if not folder.is_dir():
        return []  # a hub name: the folder string and the library versions identify it
    stats = ((p.relative_to(folder), p.stat()) for p in sorted(folder.rglob("*")) if p.is_file())
    return [(str(name), stat.st_size, stat.st_mtime_ns) for name, stat in stats]


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
