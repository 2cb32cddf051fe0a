"""Who is asking fixes how the chain runs: the caller's session (theirs alone) and roles.

The roles retrieval may read come from the caller's identity, never from the request; a session id
belongs to the user who used it first; a refused request writes nothing (no session claimed).
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from erp_chatbot.chains.chat import earlier_turns
from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.memory.history import HistoryUnavailable, InvalidSessionId, validate_session_id
from erp_chatbot.server.auth import Identity
from erp_chatbot.server.feedback import FeedbackGrants
from erp_chatbot.settings import Settings

logger = logging.getLogger(__name__)


class CallerBinding:
    """Binds a request's config to its caller (``bind``); for LangServe, once its input is valid
    (``bind_langserve``)."""

    def __init__(self, chatbot: ERPChatbot, settings: Settings, grants: FeedbackGrants) -> None:
        self.chatbot = chatbot
        self.grants = grants
        self.max_length = settings.memory.session_id_max_length
        self.max_batch_inputs = settings.server.max_batch_inputs
        self.window_turns = settings.memory.window_turns
        self.question = chatbot.as_runnable().input_schema
        self.conversation = chatbot.as_chat_runnable().input_schema

    async def bind(self, config: dict[str, Any], request: Request) -> dict[str, Any]:
        """The config the chain runs with: a valid session the caller owns, and the caller's roles.

        Anything else the client put in ``configurable`` (roles included) is dropped.
        """
        identity: Identity = request.state.identity
        session_id = (config.get("configurable") or {}).get("session_id")
        try:
            validate_session_id(session_id, self.max_length)
        except InvalidSessionId as error:
            location = ["body", "config", "configurable", "session_id"]  # FastAPI's 422 shape, as documented
            raise HTTPException(422, detail=[{"loc": location, "msg": str(error), "type": "value_error"}]) from error
        try:
            owned = await run_in_threadpool(self.chatbot.history.claim, session_id, identity.user)
        except HistoryUnavailable as error:
            # Ownership cannot be checked: answer in a throwaway session, so no history is shared.
            logger.warning("session %s answered without history: %s", session_id, error)
            session_id, owned = f"unverified-{uuid.uuid4().hex}", True
        if not owned:
            raise HTTPException(status_code=403, detail="this session belongs to another user; start a new session")
        return {**config, "configurable": {"session_id": session_id, "roles": list(identity.roles)}}

    async def bind_langserve(self, config: dict[str, Any], request: Request) -> dict[str, Any]:
        """``bind`` once the input is known to be valid: LangServe asks for the config before it
        validates the input, and a refused request must claim no session (422 with nothing written).
        A single answer also gets the run id its caller (only) may vote on once."""
        batch = request.url.path.endswith("/batch")
        body = await request.json()
        inputs = body.get("inputs") if batch else [body.get("input")]
        self._validate(inputs if isinstance(inputs, list) else [inputs])
        bound = await self.bind(config, request)
        if batch:
            return bound
        run_id = str(uuid.uuid4())
        self.grants.grant(run_id, request.state.identity.user)
        return {**bound, "run_id": run_id}

    async def bind_chat(self, config: dict[str, Any], request: Request) -> dict[str, Any]:
        """For the chat UI, which sends the whole conversation and no config: a new session of the
        caller's, seeded with the conversation's earlier turns, unless the config names one (an API
        client continuing its session), which is then bound as ``bind`` binds it."""
        body = await request.json()
        try:
            conversation = self.conversation.model_validate(body.get("input") if isinstance(body, dict) else None)
        except ValidationError as error:
            raise HTTPException(422, detail=error.errors(include_url=False, include_context=False)) from error
        if (config.get("configurable") or {}).get("session_id"):
            return await self.bind(config, request)
        bound = await self.bind({**config, "configurable": {"session_id": f"chat-{uuid.uuid4().hex}"}}, request)
        session_id = bound["configurable"]["session_id"]
        for question, answer in earlier_turns(conversation.messages)[-self.window_turns :]:
            await run_in_threadpool(self.chatbot.history.add_turn, session_id, question, answer)
        return bound

    def _validate(self, inputs: list[Any]) -> None:
        if len(inputs) > self.max_batch_inputs:
            message = f"a batch holds at most {self.max_batch_inputs} questions"
            raise HTTPException(422, detail=[{"loc": ["body", "inputs"], "msg": message, "type": "value_error"}])
        try:
            for value in inputs:
                self.question.model_validate(value)
        except ValidationError as error:
            raise HTTPException(422, detail=error.errors(include_url=False, include_context=False)) from error
