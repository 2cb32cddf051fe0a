"""The chain through LangServe: at ``server.path`` (``/erp``) invoke, batch, the streams and the
playground for prompt experiments; at ``<path>/chat`` the chat view (LangServe's chat playground)."""

from __future__ import annotations

from fastapi import FastAPI

from erp_chatbot.chatbot import ERPChatbot
from erp_chatbot.server.callers import CallerBinding

ENDPOINTS = [
    "invoke",
    "batch",
    "stream",
    "stream_log",
    "stream_events",
    "playground",
    "input_schema",
    "output_schema",
    "config_schema",
    "config_hashes",  # /erp/c/{config}/...: the playground fetches schemas for the config typed in its form
]

CHAT_ENDPOINTS = [
    "invoke",
    "stream",
    "stream_log",
    "playground",
    "input_schema",
    "output_schema",
    "config_schema",
    "config_hashes",  # the chat page fetches its schemas under /c/{config}/
]


def add_chain_routes(app: FastAPI, chatbot: ERPChatbot, path: str, callers: CallerBinding) -> None:
    from langserve import add_routes

    add_routes(
        app,
        chatbot.as_runnable(),
        path=path,
        config_keys=["configurable"],
        per_req_config_modifier=callers.bind_langserve,
        enabled_endpoints=ENDPOINTS,
    )
    add_routes(
        app,
        chatbot.as_chat_runnable(),
        path=f"{path}/chat",
        config_keys=["configurable"],
        per_req_config_modifier=callers.bind_chat,
        enabled_endpoints=CHAT_ENDPOINTS,
        playground_type="chat",
    )
