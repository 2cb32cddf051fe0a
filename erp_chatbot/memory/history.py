"""Chat history per session: Redis (sliding TTL, bounded window) or in-process.

The Redis layout is LangChain's ``RedisChatMessageHistory``'s: a list at ``<prefix><session_id>``
holding ``message_to_dict`` JSON, newest first, so LangChain tooling can read our sessions. We do
not subclass it: its base class is deprecated in langchain-core 1.x, and it writes one message per
round trip, while a turn (question and answer) must be stored, trimmed and re-timed atomically.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, message_to_dict, messages_from_dict

from erp_chatbot.settings import MemorySettings

logger = logging.getLogger(__name__)
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$")


class InvalidSessionId(ValueError):
    """The session id is empty, too long or has characters outside [A-Za-z0-9._:@-]."""


def validate_session_id(session_id: object, max_length: int = 128) -> str:
    if not isinstance(session_id, str) or not session_id:
        raise InvalidSessionId("session_id is required: pass a non-empty string")
    if len(session_id) > max_length:
        raise InvalidSessionId(f"session_id is {len(session_id)} characters long; the limit is {max_length}")
    if not _SESSION_ID.match(session_id):
        raise InvalidSessionId(
            "session_id may only contain letters, digits and . _ : @ - (and must start with a letter or digit)"
        )
    return session_id


class ChatHistoryStore(Protocol):
    """Where turns are kept; ``messages`` returns at most the window, oldest first."""

    def messages(self, session_id: str) -> list[BaseMessage]: ...

    def add_turn(self, session_id: str, question: str, answer: str) -> None: ...

    def clear(self, session_id: str) -> None: ...

    def claim(self, session_id: str, owner: str) -> bool:
        """Make ``owner`` the session's owner if it has none; False when someone else owns it."""
        ...


class HistoryUnavailable(RuntimeError):
    """The history store cannot be reached (e.g. Redis is down); ownership cannot be checked."""


# KEYS: the owner key, the history key; ARGV: the caller, the TTL. A session is claimed only when
# it has no owner and no history: a history whose owner key is gone belongs to nobody new. The
# owner's claim refreshes both keys, so they expire together.
_CLAIM = """
local owner = redis.call('GET', KEYS[1])
if not owner then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    return 0
  end
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 1
end
if owner == ARGV[1] then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  return 1
end
return 0
"""


class RedisChatHistory:
    """Turns in Redis under ``<key_prefix><session_id>``, its owner under ``<owner_prefix><session_id>``;
    every read, write and claim refreshes both TTLs in one transaction, so they expire together.

    Redis faults never fail a turn: while Redis is unreachable, reads return no history and
    writes are skipped, with one warning when it goes and one note when it is back (redis-py
    reconnects by itself). Each call waits at most ``socket_timeout_seconds``.
    """

    def __init__(self, settings: MemorySettings, client: object | None = None) -> None:
        import redis

        if client is None and not settings.redis_url:
            raise ValueError("memory.redis_url is not set; use InMemoryChatHistory instead")
        self.settings = settings
        self.client = client or redis.Redis.from_url(
            settings.redis_url,
            socket_timeout=settings.socket_timeout_seconds,
            socket_connect_timeout=settings.socket_timeout_seconds,
        )

        self._claim = self.client.register_script(_CLAIM)
        self._down = False
        self._state_lock = threading.Lock()

    def key(self, session_id: str) -> str:
        return self.settings.key_prefix + validate_session_id(session_id, self.settings.session_id_max_length)

    def owner_key(self, session_id: str) -> str:
        return self.settings.owner_prefix + validate_session_id(session_id, self.settings.session_id_max_length)

    def messages(self, session_id: str) -> list[BaseMessage]:
        key = self.key(session_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(key, 0, 2 * self.settings.window_turns - 1)
        pipe.expire(key, self.settings.ttl_seconds)
        pipe.expire(self.owner_key(session_id), self.settings.ttl_seconds)
        result = self._run(pipe.execute, "read the history")
        if result is None:
            return []
        return messages_from_dict([json.loads(item) for item in reversed(result[0])])

    def add_turn(self, session_id: str, question: str, answer: str) -> None:
        """Store the question and its answer together, in one transaction."""
        key = self.key(session_id)
        turn = [HumanMessage(content=question), AIMessage(content=answer)]
        pipe = self.client.pipeline(transaction=True)
        pipe.lpush(key, *[json.dumps(message_to_dict(m), ensure_ascii=False) for m in turn])
        pipe.ltrim(key, 0, 2 * self.settings.window_turns - 1)
        pipe.expire(key, self.settings.ttl_seconds)
        pipe.expire(self.owner_key(session_id), self.settings.ttl_seconds)
        self._run(pipe.execute, "store the turn")

    def clear(self, session_id: str) -> None:
        self.client.delete(self.key(session_id))

    def claim(self, session_id: str, owner: str) -> bool:
        """Raises ``HistoryUnavailable`` when Redis cannot say who owns the session."""
        import redis

        try:
            keys = [self.owner_key(session_id), self.key(session_id)]
            return bool(self._claim(keys=keys, args=[owner, self.settings.ttl_seconds]))
        except redis.RedisError as error:
            raise HistoryUnavailable(f"Redis at {self.settings.redis_location} is not answering ({error})") from error

    def ping(self) -> bool:
        return bool(self.client.ping())

    def _run(self, call: Callable[[], list], what: str) -> list | None:
        """``call()``, or None (logged once per outage) when Redis is unreachable."""
        import redis

        try:
            result = call()
        except redis.RedisError as error:
            with self._state_lock:
                if not self._down:
                    logger.warning("Redis is unavailable, answering without history (could not %s: %s)", what, error)
                self._down = True
            return None
        if self._down:
            with self._state_lock:
                self._down = False
            logger.warning("Redis is back: chat history is kept again")
        return result


class InMemoryChatHistory:
    """The same contract in this process only, for use without Redis (lost on restart)."""

    def __init__(self, settings: MemorySettings) -> None:
        self.settings = settings
        self._sessions: dict[str, tuple[float, deque[BaseMessage]]] = {}
        self._owners: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def messages(self, session_id: str) -> list[BaseMessage]:
        validate_session_id(session_id, self.settings.session_id_max_length)
        with self._lock:
            self._expire()
            entry = self._sessions.get(session_id)
            if entry is None:
                return []
            self._touch(session_id, entry[1])
            return list(entry[1])

    def add_turn(self, session_id: str, question: str, answer: str) -> None:
        validate_session_id(session_id, self.settings.session_id_max_length)
        with self._lock:
            self._expire()
            _, turns = self._sessions.get(session_id, (0.0, deque(maxlen=2 * self.settings.window_turns)))
            turns.extend([HumanMessage(content=question), AIMessage(content=answer)])
            self._touch(session_id, turns)

    def clear(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(session_id, None)

    def claim(self, session_id: str, owner: str) -> bool:
        validate_session_id(session_id, self.settings.session_id_max_length)
        with self._lock:
            now = time.monotonic()
            self._expire()
            current = self._owners.get(session_id)
            if (current and current[0] != owner) or (not current and session_id in self._sessions):
                return False
            self._owners[session_id] = (owner, now)
            if session_id in self._sessions:
                self._sessions[session_id] = (now, self._sessions[session_id][1])
            return True

    def _touch(self, session_id: str, turns: deque[BaseMessage]) -> None:
        """The session was used now: its history and its owner live on together."""
        now = time.monotonic()
        self._sessions[session_id] = (now, turns)
        if session_id in self._owners:
            self._owners[session_id] = (self._owners[session_id][0], now)

    def _expire(self) -> None:
        cutoff = time.monotonic() - self.settings.ttl_seconds
        for session_id in [s for s, (seen, _) in self._sessions.items() if seen < cutoff]:
            del self._sessions[session_id]
        for session_id in [s for s, (_, seen) in self._owners.items() if seen < cutoff]:
            del self._owners[session_id]


def redis_reachable(settings: MemorySettings) -> bool:
    """Whether the configured Redis answers a PING within the socket timeout."""
    import redis

    if not settings.redis_url:
        return False
    try:
        return bool(RedisChatHistory(settings).ping())
    except redis.RedisError:
        return False


def build_history(settings: MemorySettings) -> ChatHistoryStore:
    """Redis when a URL is configured; otherwise in-process, and say so once."""
    if settings.redis_url:
        return RedisChatHistory(settings)
    logger.warning("memory.redis_url is not set: chat history is kept in this process only and lost on restart")
    return InMemoryChatHistory(settings)


def history_state(history: ChatHistoryStore) -> dict[str, Any]:
    """For ``/health``: which store keeps histories, and whether it answers now."""
    ping = getattr(history, "ping", None)
    if ping is None:
        return {"backend": "in-process", "ok": True}
    try:
        return {"backend": "redis", "ok": bool(ping())}
    except Exception as error:
        return {"backend": "redis", "ok": False, "error": str(error)}
