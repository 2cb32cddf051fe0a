"""``create_app``: the chain at ``/erp`` (LangServe, playground included) and ``/health``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import BaseModel, Field

from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.memory.history import InvalidSessionId, validate_session_id
from erp_chatbot.settings import Settings


class Feedback(BaseModel):
    run_id: str = Field(..., min_length=1, max_length=64, description="the answer's run id")
    vote: Literal["up", "down"]


def create_app(chatbot: ERPChatbot | None = None, settings: Settings | None = None) -> FastAPI:
    """Serve ``chatbot`` (built from ``settings`` when not given)."""
    from langserve import add_routes

    chatbot = chatbot or ERPChatbot.from_settings(settings)
    settings = chatbot.settings
    workers = settings.batching.batch_size * settings.batching.max_concurrency + 8

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Generation runs in worker threads; asyncio's default pool (cores + 4) would cap how many
        # requests can wait for a batch at once, and with it the batch size.
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

    async def require_session(config: dict[str, Any], request: Request) -> dict[str, Any]:
        """Reject a request without a valid session id before any work is done."""
        session_id = (config.get("configurable") or {}).get("session_id")
        try:
            validate_session_id(session_id, max_length)
        except InvalidSessionId as error:
            raise HTTPException(status_code=422, detail=str(error)) from error
        return config

    add_routes(
        app,
        chatbot.as_runnable(),
        path=settings.server.path,
        config_keys=["configurable"],
        per_req_config_modifier=require_session,
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
        ],
    )

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from erp_chatbot.evaluation import read_scores

        chatbot.metrics.load_evaluations(read_scores(settings.evaluations_file))
        return Response(generate_latest(chatbot.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/feedback", status_code=204)
    def feedback(body: Feedback) -> None:
        """Thumbs up or down on an answer (its run_id, as /erp/invoke returns in metadata)."""
        chatbot.metrics.record_feedback(body.vote == "up")

    @app.get("/health")
    def health() -> dict[str, Any]:
        state = chatbot.health()
        state["status"] = "ok" if state["memory"]["ok"] else "degraded"
        return state

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{settings.server.path}/playground/")

    return app
