"""erp-chatbot: answers ERP questions from a company's own documents, in Korean and English."""

from erp_chatbot.settings import Settings

__all__ = ["Answer", "ERPChatbot", "Settings"]


def __getattr__(name: str):
    if name in ("ERPChatbot", "Answer"):
        from erp_chatbot import chatbot

        return getattr(chatbot, name)
    raise AttributeError(f"module 'erp_chatbot' has no attribute {name!r}")
