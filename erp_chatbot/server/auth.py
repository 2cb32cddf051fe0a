"""API keys: each maps to a user and their roles; only the keys' sha256 is stored.

The keys file (``access.api_keys_file``, YAML) is written by ``erp-chatbot keys add``::

    keys:
      - user: alice
        roles: [finance]
        sha256: 3f1c...

Keys are 256-bit random tokens, so a plain sha256 is enough to make the file useless to a reader.
The file is re-read when it changes: keys added or removed take effect without a restart.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml

from erp_chatbot.knowledge.access import normalise_roles

KEY_PREFIX = "erp_"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


@dataclass(frozen=True)
class Identity:
    user: str
    roles: tuple[str, ...]


class APIKeyFileError(ValueError):
    """The keys file is unreadable or malformed; the message names it."""


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class APIKeys:
    """Looks callers up by key in the keys file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: float | None = None
        self._by_hash: dict[str, Identity] = {}

    def authenticate(self, key: str | None) -> Identity | None:
        """The key's identity, or None for a missing or unknown key."""
        if not key:
            return None
        return self._current().get(hash_key(key))

    def add(self, user: str, roles: list[str]) -> str:
        """Create a key for ``user``; returns it (the only time it is shown)."""
        if not user.strip():
            raise APIKeyFileError("a key needs a user name")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        entries = self._entries()
        entries.append({"user": user.strip(), "roles": normalise_roles(roles, "roles"), "sha256": hash_key(key)})
        self._write(entries)
        return key

    def revoke(self, user: str) -> int:
        """Remove every key of ``user``; returns how many were removed."""
        entries = self._entries()
        kept = [entry for entry in entries if entry["user"] != user]
        self._write(kept)
        return len(entries) - len(kept)

    def users(self) -> list[Identity]:
        return [Identity(e["user"], tuple(e["roles"])) for e in self._entries()]

    def _current(self) -> dict[str, Identity]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            return {}
        with self._lock:
            if mtime != self._seen:
                self._by_hash = {e["sha256"]: Identity(e["user"], tuple(e["roles"])) for e in self._entries()}
                self._seen = mtime
            return self._by_hash

    def _entries(self) -> list[dict]:
        if not self.path.is_file():
            return []
        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as error:
            raise APIKeyFileError(f"{self.path}: cannot be read as YAML ({error})") from error
        entries = data.get("keys", []) if isinstance(data, dict) else None
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and {"user", "roles", "sha256"} <= e.keys() for e in entries
        ):
            raise APIKeyFileError(f"{self.path}: expected 'keys: [{{user, roles, sha256}}, ...]'")
        return [{**e, "roles": normalise_roles(e["roles"], f"{self.path} [{e['user']}]")} for e in entries]

    def _write(self, entries: list[dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(f".{self.path.name}.tmp")
        staging.write_text(yaml.safe_dump({"keys": entries}, sort_keys=False, allow_unicode=True), encoding="utf-8")
        staging.chmod(0o600)
        staging.replace(self.path)


def key_from_headers(authorization: str | None, api_key: str | None) -> str | None:
    """``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    if api_key:
        return api_key.strip()
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def is_loopback(host: str) -> bool:
    return host in LOOPBACK_HOSTS or host.startswith("127.")
