"""``create_app``: the chain at ``/erp`` (LangServe, playground included), in OpenAI's shape at
``/v1/chat/completions``, the chat view at ``/chat/``, and the operations routes (``/health``,
``/metrics``, ``/feedback``).

Every request passes the guards (``guards``): deadline, API key or loopback, rate, body size and
JSON. The caller's identity then fixes the chain's config (``callers``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.server.access_log import redact_access_log
from erp_chatbot.server.auth import APIKeys, Identity, is_loopback
from erp_chatbot.server.cached_turns import ServeCachedTurns
from erp_chatbot.server.callers import CallerBinding
from erp_chatbot.server.chain_routes import add_chain_routes
from erp_chatbot.server.chat_page import chat_page_router
from erp_chatbot.server.errors import add_error_handlers
from erp_chatbot.server.feedback import FeedbackGrants
from erp_chatbot.server.guards import Authenticate, CheckBody, Deadline, RateLimit
from erp_chatbot.server.malloc import tune_malloc
from erp_chatbot.server.openai_compat import add_openai_routes
from erp_chatbot.server.ops import ops_router
from erp_chatbot.settings import Settings


def create_app(chatbot: ERPChatbot | None = None, settings: Settings | None = None) -> FastAPI:
    """Serve ``chatbot`` (built from ``settings`` when not given; when both are given, ``settings``
    says how to serve it)."""
    settings = settings or (chatbot.settings if chatbot else Settings())
    keys = _api_keys(settings)
    tune_malloc(settings.server.malloc_arenas, settings.server.malloc_mmap_threshold_mb)
    redact_access_log()
    chatbot = chatbot or ERPChatbot.from_settings(settings)
    app = FastAPI(
        title="erp-chatbot",
        description="Answers ERP questions from the company's documents, in Korean and English.",
        lifespan=_request_threads(settings.batching.batch_size * settings.batching.max_concurrency + 8),
    )
    grants = FeedbackGrants(settings.memory)
    callers = CallerBinding(chatbot, settings, grants)
    add_chain_routes(app, chatbot, settings.server.path, callers)
    add_openai_routes(app, chatbot, callers.bind)
    app.include_router(ops_router(chatbot, settings, grants))
    app.include_router(chat_page_router(settings.server.path))
    add_error_handlers(app)
    _add_guards(app, chatbot, settings, keys, grants)
    return app


def _api_keys(settings: Settings) -> APIKeys | None:
    keys = APIKeys(settings.access.api_keys_file) if settings.access.api_keys_file else None
    if keys is None and not is_loopback(settings.server.host):
        raise ValueError(
            f"server.host is {settings.server.host}: beyond loopback every request needs an API key. "
            "Create keys with 'erp-chatbot keys add --user NAME --roles ROLE' and set access.api_keys_file"
        )
    return keys


def _request_threads(workers: int) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The chain's sync steps (retrieval, llama.cpp, an unbatched pipeline) run in worker threads;
    asyncio's default pool (cores + 4) would queue requests for a thread."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="erp-request")
        asyncio.get_running_loop().set_default_executor(executor)
        yield
        executor.shutdown(wait=False)

    return lifespan


def _add_guards(
    app: FastAPI, chatbot: ERPChatbot, settings: Settings, keys: APIKeys | None, grants: FeedbackGrants
) -> None:
    """Added last = runs first: the deadline covers everything, then identity, then the caller's
    rate, then the body, then cached first turns are answered before LangServe."""
    if settings.server.cached_first_turns:
        app.add_middleware(ServeCachedTurns, chatbot=chatbot, path=settings.server.path, grants=grants)
    app.add_middleware(CheckBody, max_bytes=settings.server.max_body_bytes)
    if settings.server.rate_limit_per_minute:
        app.add_middleware(RateLimit, per_minute=settings.server.rate_limit_per_minute, memory=settings.memory)
    anonymous = Identity("anonymous", tuple(settings.access.default_roles))
    app.add_middleware(Authenticate, keys=keys, anonymous=anonymous)
    app.add_middleware(Deadline, seconds=settings.server.request_timeout_seconds)
