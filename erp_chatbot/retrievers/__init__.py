"""Retrievers over the knowledge index."""

from erp_chatbot.retrievers.erp import ERPRetriever

__all__ = ["ERPRetriever"]
