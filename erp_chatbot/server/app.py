"""``create_app``: the chain at ``/erp`` (LangServe, playground included), in OpenAI's shape at
``/v1/chat/completions``, and ``/health``.

Every request passes the guards (``guards``): API key or loopback, body size and JSON, deadline.
The caller's identity then fixes the chain's config: the roles retrieval may read come from the
identity, never from the request, and a session id belongs to the user who used it first.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel, Field, ValidationError

from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.memory.history import HistoryUnavailable, InvalidSessionId, validate_session_id
from erp_chatbot.server.access_log import redact_access_log
from erp_chatbot.server.auth import APIKeys, Identity, is_loopback
from erp_chatbot.server.cached_turns import ServeCachedTurns
from erp_chatbot.server.feedback import FeedbackGrants, FeedbackUnavailable
from erp_chatbot.server.guards import Authenticate, CheckBody, Deadline, RateLimit
from erp_chatbot.server.openai_compat import add_openai_routes
from erp_chatbot.settings import Settings

logger = logging.getLogger(__name__)


def tune_malloc(arenas: int | None, mmap_threshold_mb: int | None) -> None:
    """glibc's malloc for a long-lived server (``server.malloc_arenas``, ``server.malloc_mmap_threshold_mb``).

    Each request thread may otherwise get an arena of its own (up to 8 per core, 64 MB reserved
    each): under 16 demo clients a cap of 2 lowers the server's peak RSS at the same answers/s.
    glibc also raises its mmap threshold (up to 32 MB) each time a mapped block is freed, after
    which ~20 MB saved prompt states live in the heap and their memory stays there when they are
    let go: a fixed 4 MB threshold lowers the peak further (bench/README.md, runtime.py).
    ``MALLOC_ARENA_MAX`` and ``MALLOC_MMAP_THRESHOLD_`` in the environment win; elsewhere than glibc, nothing.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    options = [
        ("MALLOC_ARENA_MAX", -8, arenas),  # mallopt's M_ARENA_MAX
        ("MALLOC_MMAP_THRESHOLD_", -3, mmap_threshold_mb and mmap_threshold_mb << 20),  # M_MMAP_THRESHOLD
    ]
    for variable, option, value in options:
        if value is not None and variable not in os.environ and libc.mallopt(option, value) != 1:
            logger.warning("could not set %s to %d", variable, value)


class Feedback(BaseModel):
    run_id: str = Field(..., min_length=1, max_length=64, description="the answer's run id")
    vote: Literal["up", "down"]


def create_app(chatbot: ERPChatbot | None = None, settings: Settings | None = None) -> FastAPI:
    """Serve ``chatbot`` (built from ``settings`` when not given; when both are given, ``settings``
    says how to serve it)."""
    from langserve import add_routes

    settings = settings or (chatbot.settings if chatbot else Settings())
    keys = APIKeys(settings.access.api_keys_file) if settings.access.api_keys_file else None
    if keys is None and not is_loopback(settings.server.host):
        raise ValueError(
            f"server.host is {settings.server.host}: beyond loopback every request needs an API key. "
            "Create keys with 'erp-chatbot keys add --user NAME --roles ROLE' and set access.api_keys_file"
        )
    tune_malloc(settings.server.malloc_arenas, settings.server.malloc_mmap_threshold_mb)
    redact_access_log()
    chatbot = chatbot or ERPChatbot.from_settings(settings)
    workers = settings.batching.batch_size * settings.batching.max_concurrency + 8

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The chain's sync steps (retrieval, llama.cpp, an unbatched pipeline) run in worker
        # threads; asyncio's default pool (cores + 4) would queue requests for a thread.
        executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="erp-request")
        asyncio.get_running_loop().set_default_executor(executor)
        yield
        executor.shutdown(wait=False)

    app = FastAPI(
        title="erp-chatbot",
        description="Answers ERP questions from the company's documents, in Korean and English.",
        lifespan=lifespan,
    )
    max_length = settings.memory.session_id_max_length

    async def bind_caller(config: dict[str, Any], request: Request) -> dict[str, Any]:
        """The config the chain runs with: a valid session the caller owns, and the caller's roles.

        Anything else the client put in ``configurable`` (roles included) is dropped.
        """
        identity: Identity = request.state.identity
        session_id = (config.get("configurable") or {}).get("session_id")
        try:
            validate_session_id(session_id, max_length)
        except InvalidSessionId as error:
            location = ["body", "config", "configurable", "session_id"]  # FastAPI's 422 shape, as documented
            raise HTTPException(422, detail=[{"loc": location, "msg": str(error), "type": "value_error"}]) from error
        try:
            owned = await run_in_threadpool(chatbot.history.claim, session_id, identity.user)
        except HistoryUnavailable as error:
            # Ownership cannot be checked: answer in a throwaway session, so no history is shared.
            logger.warning("session %s answered without history: %s", session_id, error)
            session_id, owned = f"unverified-{uuid.uuid4().hex}", True
        if not owned:
            raise HTTPException(status_code=403, detail="this session belongs to another user; start a new session")
        return {**config, "configurable": {"session_id": session_id, "roles": list(identity.roles)}}

    grants = FeedbackGrants(settings.memory)

    def with_run_id(config: dict[str, Any], request: Request) -> dict[str, Any]:
        """The run id the answer reports, which its caller (only) may then vote on once."""
        run_id = str(uuid.uuid4())
        grants.grant(run_id, request.state.identity.user)
        return {**config, "run_id": run_id}

    question = chatbot.as_runnable().input_schema

    async def bind_langserve_caller(config: dict[str, Any], request: Request) -> dict[str, Any]:
        """``bind_caller`` once the input is known to be valid: LangServe asks for the config before it
        validates the input, and a refused request must claim no session (422 with nothing written)."""
        body = await request.json()
        inputs = body.get("inputs") if request.url.path.endswith("/batch") else [body.get("input")]
        if isinstance(inputs, list) and len(inputs) > settings.server.max_batch_inputs:
            limit = settings.server.max_batch_inputs
            detail = [
                {"loc": ["body", "inputs"], "msg": f"a batch holds at most {limit} questions", "type": "value_error"}
            ]
            raise HTTPException(422, detail=detail)
        try:
            for value in inputs if isinstance(inputs, list) else [inputs]:
                question.model_validate(value)
        except ValidationError as error:
            raise HTTPException(422, detail=error.errors(include_url=False, include_context=False)) from error
        bound = await bind_caller(config, request)
        return bound if request.url.path.endswith("/batch") else with_run_id(bound, request)

    add_routes(
        app,
        chatbot.as_runnable(),
        path=settings.server.path,
        config_keys=["configurable"],
        per_req_config_modifier=bind_langserve_caller,
        enabled_endpoints=[
            "invoke",
            "batch",
            "stream",
            "stream_log",
            "stream_events",
            "playground",
            "input_schema",
            "output_schema",
            "config_schema",
            # /erp/c/{config}/...: the playground fetches schemas for the config typed in its form
            "config_hashes",
        ],
    )

    add_openai_routes(app, chatbot, bind_caller)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from erp_chatbot.evaluation import read_scores

        chatbot.metrics.load_evaluations(read_scores(settings.evaluations_file))
        return Response(generate_latest(chatbot.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/feedback", status_code=204)
    def feedback(body: Feedback, request: Request) -> None:
        """Thumbs up or down on an answer you received (its run_id, as /erp/invoke returns in
        metadata), once; answers of a batch cannot be voted on."""
        try:
            allowed = grants.take(body.run_id, request.state.identity.user)
        except FeedbackUnavailable as error:
            raise HTTPException(503, detail=f"feedback cannot be checked now: {error}") from error
        if not allowed:
            raise HTTPException(404, detail="no answer with this run_id was given to you, or it already has a vote")
        chatbot.metrics.record_feedback(body.vote == "up")

    @app.get("/health")
    def health(request: Request) -> dict[str, Any]:
        """``degraded`` while Redis is unreachable: answers go on without history and cache. Without
        a key, only the status (a liveness probe); the model, index and cache details need one."""
        state = chatbot.health()
        status = "ok" if state["memory"]["ok"] else "degraded"
        return {"status": status} if request.state.identity is None else {**state, "status": status}

    @app.exception_handler(HTTPException)
    async def documented_422(request: Request, error: HTTPException) -> Response:
        """LangServe answers some 422s with a string; the schema (FastAPI's) documents a list."""
        if error.status_code == 422 and isinstance(error.detail, str):
            detail = [{"loc": ["body"], "msg": error.detail, "type": "value_error"}]
            return JSONResponse(status_code=422, content={"detail": detail})
        return await http_exception_handler(request, error)

    @app.exception_handler(ValidationError)
    async def invalid_input(_: Request, error: ValidationError) -> JSONResponse:
        """LangServe's batch endpoint validates inputs outside its own 422 translation."""
        return JSONResponse(status_code=422, content={"detail": error.errors(include_url=False, include_context=False)})

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{settings.server.path}/playground/")

    # Added last = runs first: the deadline covers everything, then identity, then the caller's
    # rate, then the body, then cached first turns are answered before LangServe.
    if settings.server.cached_first_turns:
        app.add_middleware(ServeCachedTurns, chatbot=chatbot, path=settings.server.path, grants=grants)
    app.add_middleware(CheckBody, max_bytes=settings.server.max_body_bytes)
    if settings.server.rate_limit_per_minute:
        app.add_middleware(RateLimit, per_minute=settings.server.rate_limit_per_minute, memory=settings.memory)
    anonymous = Identity("anonymous", tuple(settings.access.default_roles))
    app.add_middleware(Authenticate, keys=keys, anonymous=anonymous)
    app.add_middleware(Deadline, seconds=settings.server.request_timeout_seconds)
    return app
