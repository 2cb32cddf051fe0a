"""ASGI middleware in front of every route: who is calling, what they send, how long it may take.

- ``Authenticate``: with a keys file every request needs a valid key (401 otherwise); without one,
  only loopback callers are served, as the anonymous identity. The identity lands in
  ``request.state.identity``.
- ``CheckBody``: bodies over the size limit get 413; POST bodies that are not strict UTF-8 JSON
  (``_json_problem``), whatever their content type, get 400 before any route (LangServe's
  included) parses them.
- ``RateLimit``: each caller gets so many requests a minute (counted in Redis, so for all
  replicas together); beyond, 429 with ``Retry-After``.
- ``Deadline``: a request that has not started its response within the timeout gets 504.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from erp_chatbot.server.auth import APIKeys, Identity, is_loopback, key_from_headers
from erp_chatbot.server.chat_page import OPEN_PAGES
from erp_chatbot.settings import MemorySettings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

OPEN_PATHS = ("/health", "/docs", "/openapi.json")  # answer without a key (probes, API docs)
logger = logging.getLogger(__name__)


async def send_error(send: Send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


class Authenticate:
    def __init__(self, app: ASGIApp, keys: APIKeys | None, anonymous: Identity) -> None:
        self.app, self.keys, self.anonymous = app, keys, anonymous

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        identity = self._identify(scope)
        if identity is None and not (scope["path"].startswith(OPEN_PATHS) or scope["path"] in OPEN_PAGES):
            if self.keys is None:
                return await send_error(
                    send, 403, "API keys are required beyond loopback: set access.api_keys_file (erp-chatbot keys add)"
                )
            return await send_error(
                send,
                401,
                "a valid API key is required: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
                [(b"www-authenticate", b"Bearer")],
            )
        scope.setdefault("state", {})["identity"] = identity
        await self.app(scope, receive, send)

    def _identify(self, scope: Scope) -> Identity | None:
        if self.keys is None:
            client = (scope.get("client") or ("",))[0]
            return self.anonymous if is_loopback(client) else None
        key = key_from_headers(_header(scope, b"authorization"), _header(scope, b"x-api-key"))
        return self.keys.authenticate(key)


class CheckBody:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = _header(scope, b"content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_error(send, 413, f"request body is over the {self.max_bytes}-byte limit")
        body = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.max_bytes:
                return await send_error(send, 413, f"request body is over the {self.max_bytes}-byte limit")
            if not message.get("more_body"):
                break
        problem = _json_problem(body) if body.strip() else None  # every route reads a body as JSON
        if problem:
            return await send_error(send, 400, problem)
        await self.app(scope, replaying(body, receive), send)


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the already read ``body`` on once more, then defers to ``receive``."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


MAX_JSON_DEPTH = 64  # deeper bodies are refused before parsing: Python's parser recurses per level


def _json_problem(body: bytes) -> str | None:
    """Why ``body`` is not strict JSON that every route can read, or None.

    Strict: UTF-8, nested at most ``MAX_JSON_DEPTH`` deep, no ``NaN``/``Infinity``, no integer
    Python refuses to read (over 4300 digits), no lone surrogate in a string."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"request body is not valid UTF-8 (byte {error.start}); send UTF-8 JSON"
    if _depth(text) > MAX_JSON_DEPTH:
        return f"request body is nested more than {MAX_JSON_DEPTH} levels deep"
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as error:
        return f"request body is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
    except ValueError as error:  # NaN and Infinity (_refuse_constant), integers over 4300 digits
        return f"request body is not valid JSON ({error})"
    if _has_lone_surrogate(value):
        return "request body holds a lone surrogate (such as \\ud800) in a string; send valid Unicode"
    return None


def _depth(text: str) -> int:
    """How deep arrays and objects nest, strings skipped."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            escaped, in_string = (not escaped and char == "\\"), in_string and (escaped or char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _has_lone_surrogate(value: object) -> bool:
    if isinstance(value, str):
        return any("\ud800" <= char <= "\udfff" for char in value)
    if isinstance(value, dict):
        return any(_has_lone_surrogate(k) or _has_lone_surrogate(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_lone_surrogate(item) for item in value)
    return False


class RateLimit:
    """A fixed one-minute window per caller, ``<prefix><user>:<minute>`` in Redis (in this process
    without Redis). While Redis is unreachable requests are not limited: answering beats refusing."""

    def __init__(self, app: ASGIApp, per_minute: int, memory: MemorySettings, prefix: str = "erp:rate:") -> None:
        self.app, self.per_minute, self.prefix = app, per_minute, prefix
        self._client = None
        if memory.redis_url:
            import redis

            timeout = memory.socket_timeout_seconds
            self._client = redis.Redis.from_url(
                memory.redis_url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        self._local: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        identity = scope.get("state", {}).get("identity") if scope["type"] == "http" else None
        if identity is None:  # open paths and other protocols
            return await self.app(scope, receive, send)
        now = time.time()
        window = int(now // 60)
        if await self._count(f"{self.prefix}{identity.user}:{window}") > self.per_minute:
            retry = str(max(1, int((window + 1) * 60 - now)))
            return await send_error(
                send,
                429,
                f"over {self.per_minute} requests a minute for this key; retry in {retry} s",
                [(b"retry-after", retry.encode())],
            )
        await self.app(scope, receive, send)

    async def _count(self, key: str) -> int:
        if self._client is None:
            self._local = {k: v for k, v in self._local.items() if k.rsplit(":", 1)[1] >= key.rsplit(":", 1)[1]}
            self._local[key] = self._local.get(key, 0) + 1
            return self._local[key]
        import redis

        try:
            pipe = self._client.pipeline(transaction=True)
            pipe.incr(key)
            pipe.expire(key, 120)
            count, _ = await asyncio.to_thread(pipe.execute)
            return int(count)
        except redis.RedisError:
            return 0


class Deadline:
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app, self.seconds = app, seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = asyncio.Event()

        async def watched_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        work = asyncio.ensure_future(self.app(scope, receive, watched_send))
        waiting = asyncio.ensure_future(started.wait())
        await asyncio.wait({work, waiting}, timeout=self.seconds, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        if not started.is_set() and not work.done():
            work.cancel()
            logger.warning("%s %s took over %.0f s: answered 504", scope["method"], scope["path"], self.seconds)
            return await send_error(
                send, 504, f"no response within {self.seconds:g} s (server.request_timeout_seconds)"
            )
        await work
