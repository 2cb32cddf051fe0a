"""Which answers may be voted on: each run the server answered, by the caller it answered, once.

``bind_caller`` grants a vote when it gives a request its run id; ``/feedback`` takes the grant.
Made-up run ids, another user's answers and second votes find no grant. Grants live in Redis
(shared by replicas) beside the chat history, else in this process, for ``FEEDBACK_WINDOW`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time

from erp_chatbot.settings import MemorySettings

FEEDBACK_WINDOW = 24 * 3600  # seconds after an answer during which it can be voted on
_PREFIX = "feedback-grant:"
# KEYS: the grant; ARGV: the caller. Deleted only when it is theirs.
_TAKE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
logger = logging.getLogger(__name__)


class FeedbackUnavailable(RuntimeError):
    """Redis cannot say whether the vote is allowed."""


class FeedbackGrants:
    def __init__(self, settings: MemorySettings) -> None:
        self._client = None
        if settings.redis_url:
            import redis

            self._client = redis.Redis.from_url(
                settings.redis_url,
                socket_timeout=settings.socket_timeout_seconds,
                socket_connect_timeout=settings.socket_timeout_seconds,
            )
            self._take = self._client.register_script(_TAKE)
        self._local: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def grant(self, run_id: str, user: str) -> None:
        """Best effort: without Redis the answer still goes out, it just cannot be voted on."""
        if self._client is None:
            with self._lock:
                self._expire()
                self._local[run_id] = (user, time.monotonic())
            return
        import redis

        try:
            self._client.set(_PREFIX + run_id, user, ex=FEEDBACK_WINDOW)
        except redis.RedisError as error:
            logger.warning("could not record run %s for feedback: %s", run_id, error)

    def take(self, run_id: str, user: str) -> bool:
        """True once for a run that answered ``user``."""
        if self._client is None:
            with self._lock:
                self._expire()
                if self._local.get(run_id, ("",))[0] != user:
                    return False
                del self._local[run_id]
                return True
        import redis

        try:
            return bool(self._take(keys=[_PREFIX + run_id], args=[user]))
        except redis.RedisError as error:
            raise FeedbackUnavailable(f"Redis is not answering ({error})") from error

    def _expire(self) -> None:
        cutoff = time.monotonic() - FEEDBACK_WINDOW
        for run_id in [r for r, (_, at) in self._local.items() if at < cutoff]:
            del self._local[run_id]
