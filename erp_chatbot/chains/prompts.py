"""Prompts, per language: condensing a follow-up, answering from context, declining."""

from __future__ import annotations

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.prompts import ChatPromptTemplate

from erp_chatbot.chains.language import Language

CONDENSE = ChatPromptTemplate.from_messages(
    [
        (
            "system",
            "You rewrite follow-up questions so they can be understood without the conversation. "
            "Reply with the rewritten question only, in the language of the follow-up question.",
        ),
        (
            "human",
            "Conversation:\n{conversation}\n\nFollow-up question: {question}\n\n"
            "Rewrite the follow-up question as one standalone question. Keep ERP terms and menu names.",
        ),
    ]
)

_SYSTEM = {
    "en": "You are an ERP assistant. You answer only from the documents you are given, in English.",
    "ko": "당신은 ERP 도우미입니다. 주어진 문서의 내용만으로 한국어로 답합니다.",
}
# Measured on the demo 0.5B model: documents in the user turn and no request to cite by number
# (it then answers "[1]" alone); sources travel with the answer instead.
_HUMAN = {
    "en": (
        "Documents:\n{context}\n\nQuestion: {question}\n\n"
        "Answer the question in a few sentences using only the documents above. Include the menu path. "
        "If the documents do not contain the answer, say so."
    ),
    "ko": (
        "문서:\n{context}\n\n질문: {question}\n\n"
        "위 문서만 사용해서 질문에 한국어로 몇 문장으로 답하세요. 메뉴 경로를 포함하세요. "
        "문서에 답이 없으면 없다고 말하세요."
    ),
}

ANSWER = {
    language: ChatPromptTemplate.from_messages([("system", _SYSTEM[language]), ("human", _HUMAN[language])])
    for language in ("en", "ko")
}

NOT_COVERED = {
    "en": "The documents do not cover this question, so I cannot answer it from them.",
    "ko": "문서에서 이 질문에 대한 내용을 찾지 못해 답변할 수 없습니다.",
}


def format_conversation(messages: list[BaseMessage]) -> str:
    """History as plain lines: small models rewrite it better than they read chat turns."""
    return "\n".join(f"{'User' if message.type == 'human' else 'Assistant'}: {message.content}" for message in messages)


def format_context(documents: list[Document]) -> str:
    """Number each chunk and head it with its title, the way the answer prompt cites them."""
    blocks = []
    for number, doc in enumerate(documents, start=1):
        title = doc.metadata.get("title") or doc.metadata.get("source", "")
        blocks.append(f"[{number}] {title} ({doc.metadata.get('source', '')})\n{doc.page_content}")
    return "\n\n".join(blocks)


def answer_prompt(language: Language) -> ChatPromptTemplate:
    return ANSWER[language]
