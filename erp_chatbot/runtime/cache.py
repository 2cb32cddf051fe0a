"""The response cache: exact answers back without the LLM, never a wrong one.

The key covers everything that changes an answer: the normalised standalone question, the ids of
the retrieved chunks in order, the index version, the model, its generation settings and the
prompt. Two LangChain ``BaseCache`` backends hold the entries: Redis (TTL per entry, at most
``max_entries`` kept by least-recent use; Redis's own ``maxmemory``/``allkeys-lru`` bounds the
memory) and an in-process LRU (TTL, entry count and byte bounds). ``AnswerCache`` puts a key on
top and keeps cache failures from ever failing a request.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.caches import RETURN_VAL_TYPE, BaseCache
from langchain_core.outputs import Generation

from erp_chatbot.settings import Settings

logger = logging.getLogger(__name__)


def _key(prompt: str, llm_string: str) -> str:
    return hashlib.sha256(f"{llm_string}\x00{prompt}".encode()).hexdigest()


def dumps(generations: RETURN_VAL_TYPE) -> str:
    """Plain JSON, never pickle: a cache entry must not be able to run code when read."""
    return json.dumps([{"text": g.text, "generation_info": g.generation_info} for g in generations])


def loads(payload: str | bytes) -> list[Generation]:
    return [Generation(**item) for item in json.loads(payload)]


class LRUResponseCache(BaseCache):
    """In-process cache: LRU eviction by entry count and total bytes; entries expire after a TTL."""

    def __init__(self, *, max_entries: int, ttl_seconds: float, max_bytes: int) -> None:
        self.max_entries, self.ttl_seconds, self.max_bytes = max_entries, ttl_seconds, max_bytes
        self._entries: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        key = _key(prompt, llm_string)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return loads(entry[1])

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        key, payload = _key(prompt, llm_string), dumps(return_val)
        if len(payload) > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (time.monotonic() + self.ttl_seconds, payload)
            self._bytes += len(payload)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def clear(self, **kwargs: Any) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def _drop(self, key: str) -> None:
        _, payload = self._entries.pop(key)
        self._bytes -= len(payload)


class RedisResponseCache(BaseCache):
    """Entries at ``<prefix><sha256>`` with a TTL; a sorted set orders them by last use."""

    def __init__(self, client: Any, *, max_entries: int, ttl_seconds: int, prefix: str = "erp:answer:") -> None:
        self.client, self.max_entries, self.ttl_seconds, self.prefix = client, max_entries, ttl_seconds, prefix
        self.recency = f"{prefix}recency"

    def lookup(self, prompt: str, llm_string: str) -> RETURN_VAL_TYPE | None:
        key = self.prefix + _key(prompt, llm_string)
        payload = self.client.get(key)
        if payload is None:
            self.client.zrem(self.recency, key)
            return None
        self.client.zadd(self.recency, {key: time.time()})
        return loads(payload)

    def update(self, prompt: str, llm_string: str, return_val: RETURN_VAL_TYPE) -> None:
        key = self.prefix + _key(prompt, llm_string)
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, dumps(return_val), ex=self.ttl_seconds)
        pipe.zadd(self.recency, {key: time.time()})
        pipe.zcard(self.recency)
        *_, size = pipe.execute()
        if size > self.max_entries:
            evicted = [member for member, _ in self.client.zpopmin(self.recency, size - self.max_entries)]
            if evicted:
                self.client.delete(*evicted)

    def clear(self, **kwargs: Any) -> None:
        keys = self.client.zrange(self.recency, 0, -1)
        for start in range(0, len(keys), 500):
            self.client.delete(*keys[start : start + 500])
        self.client.delete(self.recency)

    def __len__(self) -> int:
        return int(self.client.zcard(self.recency))


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "errors": self.errors}


def normalise_question(question: str) -> str:
    """Same question, same key: Unicode NFKC, case, spacing and closing punctuation only.

    Nothing semantic: "who approves" and "who does not approve" must never share an answer.
    """
    text = unicodedata.normalize("NFKC", question).casefold()
    return re.sub(r"\s+", " ", text).strip().rstrip("?!.。？！ ")


class AnswerCache:
    """Keys answers by everything that changes them; a failing backend is logged and skipped."""

    def __init__(self, backend: BaseCache, model_version: str) -> None:
        self.backend = backend
        self.model_version = model_version
        self.stats = CacheStats()
        self._lock = threading.Lock()

    def key(self, question: str, chunk_ids: Sequence[str], index_version: str, prompt: str) -> tuple[str, str]:
        """(prompt, llm_string) for the ``BaseCache`` interface."""
        material = {"question": normalise_question(question), "chunks": list(chunk_ids), "index": index_version}
        prompt_id = hashlib.sha256(prompt.encode()).hexdigest()[:16]
        return json.dumps(material, ensure_ascii=False), f"{self.model_version}|prompt:{prompt_id}"

    def turn_key(
        self, question: str, roles: Sequence[str] | None, index_version: str, chain_id: str
    ) -> tuple[str, str]:
        """Key of a session's first turn, whole (sources and grounding included).

        With no history the standalone question is the question, and retrieval is deterministic
        given the question, the caller's roles, the index and the chain (its settings, prompts and
        model, in ``chain_id`` and the model version): so this key fixes the retrieved chunk ids
        that ``key`` holds, and a hit can skip retrieval altogether.
        """
        material = {
            "turn": normalise_question(question),
            "roles": None if roles is None else sorted(roles),
            "index": index_version,
        }
        return json.dumps(material, ensure_ascii=False), f"{self.model_version}|turn:{chain_id}"

    def get(self, key: tuple[str, str]) -> str | None:
        found = self._lookup(key)
        if found is not None:
            self._count("hits" if found else "misses")
        return found or None

    def get_turn(self, key: tuple[str, str]) -> dict[str, Any] | None:
        """A first turn's output; a miss is not counted (the chain's own lookup follows it)."""
        found = self._lookup(key)
        if not found:
            return None
        self._count("hits")
        return json.loads(found)

    def put_turn(self, key: tuple[str, str], output: dict[str, Any]) -> None:
        self.put(key, json.dumps(output, ensure_ascii=False))

    def _lookup(self, key: tuple[str, str]) -> str | None:
        """The entry's text, "" when there is none, None when the backend failed (logged)."""
        try:
            found = self.backend.lookup(*key)
        except Exception as error:
            self._count("errors")
            logger.warning("response cache lookup failed, answering without it: %s", error)
            return None
        return found[0].text if found else ""

    def put(self, key: tuple[str, str], answer: str) -> None:
        try:
            self.backend.update(*key, [Generation(text=answer)])
        except Exception as error:
            self._count("errors")
            logger.warning("response cache update failed: %s", error)

    def _count(self, field: str) -> None:
        with self._lock:
            setattr(self.stats, field, getattr(self.stats, field) + 1)


def build_answer_cache(settings: Settings, model_version: str) -> AnswerCache | None:
    """Redis when memory has a Redis URL (same server), else in-process; None when disabled."""
    cache = settings.cache
    if not cache.enabled:
        return None
    if settings.memory.redis_url:
        import redis

        client = redis.Redis.from_url(
            settings.memory.redis_url,
            socket_timeout=settings.memory.socket_timeout_seconds,
            socket_connect_timeout=settings.memory.socket_timeout_seconds,
        )
        backend: BaseCache = RedisResponseCache(
            client, max_entries=cache.max_entries, ttl_seconds=cache.ttl_seconds, prefix=cache.redis_prefix
        )
    else:
        backend = LRUResponseCache(
            max_entries=cache.max_entries, ttl_seconds=cache.ttl_seconds, max_bytes=cache.max_memory_mb * 2**20
        )
    return AnswerCache(backend, model_version)
