"""Conversation memory per session."""

from erp_chatbot.memory.history import (
    ChatHistoryStore,
    InMemoryChatHistory,
    InvalidSessionId,
    RedisChatHistory,
    build_history,
    validate_session_id,
)

__all__ = [
    "ChatHistoryStore",
    "InMemoryChatHistory",
    "InvalidSessionId",
    "RedisChatHistory",
    "build_history",
    "validate_session_id",
]
