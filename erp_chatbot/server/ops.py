"""Operations routes: ``/health``, ``/metrics``, ``/feedback``, and ``/`` (links to the chat view and playgrounds)."""

from __future__ import annotations

import html
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.server.feedback import FeedbackGrants, FeedbackUnavailable
from erp_chatbot.settings import Settings

_ROOT_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>erp-chatbot</title></head>
<body style="font-family: sans-serif; max-width: 40em; margin: 3em auto">
<h1>erp-chatbot</h1>
<p>Answers ERP questions from your documents, in Korean and English.</p>
<ul>
<li><a href="/chat/">Chat</a>: ask, and ask follow-ups; answers rendered, with their sources.</li>
<li><a href="{path}/chat/playground/">Chat playground</a>: LangServe's chat view of the same chain (plain text).</li>
<li><a href="{path}/playground/">Prompt playground</a>: the chain's whole output (sources, grounding),
with the session id under <em>Configurable</em>.</li>
<li><a href="/docs">API</a></li>
</ul></body></html>"""


class Feedback(BaseModel):
    run_id: str = Field(..., min_length=1, max_length=64, description="the answer's run id")
    vote: Literal["up", "down"]


def ops_router(chatbot: ERPChatbot, settings: Settings, grants: FeedbackGrants) -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    def health(request: Request) -> dict[str, Any]:
        """``degraded`` while Redis is unreachable: answers go on without history and cache. Without
        a key, only the status (a liveness probe); the model, index and cache details need one."""
        state = chatbot.health()
        status = "ok" if state["memory"]["ok"] else "degraded"
        return {"status": status} if request.state.identity is None else {**state, "status": status}

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from erp_chatbot.evaluation import read_scores

        chatbot.metrics.load_evaluations(read_scores(settings.evaluations_file))
        return Response(generate_latest(chatbot.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @router.post("/feedback", status_code=204)
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

    @router.get("/", include_in_schema=False)
    def root() -> HTMLResponse:
        """The pages: the chat view for asking, the playgrounds for experiments."""
        return HTMLResponse(_ROOT_PAGE.format(path=html.escape(settings.server.path)))

    return router
