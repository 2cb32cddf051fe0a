"""``/v1/chat/completions`` and ``/v1/models`` in OpenAI's shape, backed by the same chain.

Most ERP front ends and chat UIs speak this API. The question is the last user message; the
conversation lives in Redis as on ``/erp``, under the session named by ``user`` (OpenAI's
end-user id) or the ``X-Session-Id`` header; without either, each request is a new session and
earlier messages in the request are not used. Keys, roles and session ownership are the app's
(``bind``). Sources and grounding travel in an extra ``erp`` field that OpenAI clients ignore.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from erp_chatbot.chains.respond import merge_chunks
from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.schemas import InvalidQuestion, check_question

MODEL_ID = "erp-chatbot"
Bind = Callable[[dict[str, Any], Request], Awaitable[dict[str, Any]]]


class ContentPart(BaseModel):
    """A part of a message's content; only ``text`` parts are read, and their text must be text."""

    model_config = ConfigDict(extra="allow")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None


class ChatCompletionRequest(BaseModel):
    """OpenAI's request; sampling fields are accepted and ignored (the deployment's settings rule)."""

    model_config = ConfigDict(extra="allow")

    model: str = MODEL_ID
    messages: list[ChatMessage] = Field(..., min_length=1)
    stream: bool = False
    user: str | None = Field(None, description="session id: the conversation to continue")


def add_openai_routes(app: FastAPI, chatbot: ERPChatbot, bind: Bind) -> None:
    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "erp-chatbot"}],
        }

    @app.post("/v1/chat/completions", response_model=None)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        try:
            question = _question(body.messages, chatbot.settings.server.max_question_chars)
            session_id = body.user or request.headers.get("x-session-id") or f"openai-{uuid.uuid4().hex}"
            config = await bind({"configurable": {"session_id": session_id}}, request)
        except HTTPException as error:
            return _openai_error(error)
        chain = chatbot.as_runnable()
        reply = _Reply(body.model)
        if body.stream:
            chunks = chain.astream({"question": question}, config)
            return StreamingResponse(reply.events(chunks), media_type="text/event-stream")
        output = await chain.ainvoke({"question": question}, config)
        return reply.complete(output)


def _question(messages: list[ChatMessage], max_chars: int) -> str:
    user = [m for m in messages if m.role == "user"]
    if not user:
        raise HTTPException(422, detail=[_error("messages", "no user message: the last user message is the question")])
    content = user[-1].content
    text = (
        content
        if isinstance(content, str)
        else " ".join(part.text or "" for part in content or [] if part.type == "text")
    )
    try:
        return check_question(text, max_chars)
    except InvalidQuestion as error:
        raise HTTPException(422, detail=[_error("messages", str(error))]) from error


def _openai_error(error: HTTPException) -> JSONResponse:
    """OpenAI's error shape (which its clients show), beside FastAPI's ``detail``."""
    detail = error.detail
    message = "; ".join(d["msg"] for d in detail) if isinstance(detail, list) else str(detail)
    kind = "invalid_request_error" if error.status_code == 422 else "permission_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}, "detail": detail}
    return JSONResponse(body, status_code=error.status_code)


def _error(field: str, message: str) -> dict[str, Any]:
    return {"loc": ["body", field], "msg": message, "type": "value_error"}


class _Reply:
    """One completion's id and shape, whole or as server-sent events."""

    def __init__(self, model: str) -> None:
        self.id, self.model, self.created = f"chatcmpl-{uuid.uuid4().hex}", model, int(time.time())

    def complete(self, output: dict[str, Any]) -> dict[str, Any]:
        message = {"role": "assistant", "content": output["answer"]}
        return {
            **self._head("chat.completion"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "erp": _extras(output),
        }

    async def events(self, chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
        yield self._event({"role": "assistant", "content": ""}, None)
        final: dict[str, Any] = {}
        async for chunk in chunks:
            final = merge_chunks(final, chunk)
            if chunk.get("answer"):
                yield self._event({"content": chunk["answer"]}, None)
        yield self._event({}, "stop", erp=_extras(final))
        yield "data: [DONE]\n\n"

    def _event(self, delta: dict[str, Any], finish: str | None, **extra: Any) -> str:
        body = {
            **self._head("chat.completion.chunk"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps({**body, **extra}, ensure_ascii=False)}\n\n"

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}


def _extras(output: dict[str, Any]) -> dict[str, Any]:
    keys = ("sources", "language", "standalone_question", "grounding", "cached")
    return {key: output.get(key) for key in keys}
