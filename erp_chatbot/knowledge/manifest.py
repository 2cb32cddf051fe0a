"""What an index folder says about itself: its files with their checksums and chunks, how it was
built, and its signature (``knowledge.signing``). Loading checks all of it (``index.load``)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import asdict, dataclass, field

MANIFEST = "manifest.json"
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
