"""erp-chatbot: answers ERP questions from a company's own documents, in Korean and English."""

from erp_chatbot.settings import Settings

__all__ = ["Answer", "ERPChatbot", "Settings"]


def __getattr__(name: str):
    if name == "ERPChatbot":
        from erp_chatbot.chatbot import ERPChatbot

        return ERPChatbot
    if name == "Answer":
        from erp_chatbot.schemas import Answer

        return Answer
    raise AttributeError(f"module 'erp_chatbot' has no attribute {name!r}")
