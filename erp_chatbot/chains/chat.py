"""The chain for chat UIs (LangServe's chat playground): the conversation in, the answer's text out.

The answer streams as the chain writes it; after it, apart from its text, come its sources and,
when grounding found names or numbers no section holds, which ones. The conversation's earlier
turns are the session's history (``server.callers`` seeds a new session with them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from itertools import pairwise
from typing import Any

from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from erp_chatbot.chains.respond import merge_chunks
from erp_chatbot.schemas import ChatMessage

_SOURCES = {"en": "Sources", "ko": "출처"}
_UNSUPPORTED = {"en": "Not found in the documents", "ko": "문서에서 찾지 못한 내용"}


def chat_runnable(current_chain: Callable[[], Runnable], conversation: type) -> Runnable:
    """Messages in (``conversation``, a ``schemas.Conversation``), the answer as Markdown out."""

    def chat(inputs: Any, config: RunnableConfig) -> Iterator[str]:
        output: dict = {}
        for chunk in current_chain().stream({"question": question_of(inputs)}, config):
            output = merge_chunks(output, chunk)
            if chunk.get("answer"):
                yield chunk["answer"]
        yield after_answer(output)

    async def achat(inputs: Any, config: RunnableConfig) -> AsyncIterator[str]:
        output: dict = {}
        async for chunk in current_chain().astream({"question": question_of(inputs)}, config):
            output = merge_chunks(output, chunk)
            if chunk.get("answer"):
                yield chunk["answer"]
        yield after_answer(output)

    return RunnableLambda(chat, afunc=achat, name="erp_chat").with_types(input_type=conversation, output_type=str)


def question_of(inputs: Any) -> str:
    """The conversation's last message (a validated ``Conversation`` ends with the question)."""
    messages = inputs["messages"] if isinstance(inputs, dict) else inputs.messages
    last = messages[-1]
    return last["content"] if isinstance(last, dict) else last.content


def after_answer(output: dict) -> str:
    """The sources as a list, then what grounding could not find, in the answer's language: plain
    text that reads the same as Markdown (LangServe's chat page shows messages as plain text)."""
    language = output.get("language", "en")
    lines = [f"\n\n---\n{_SOURCES[language]}:"] if output.get("sources") else []
    lines += [f"- {source['title']} ({source['source']})" for source in output.get("sources", [])]
    unsupported = (output.get("grounding") or {}).get("unsupported") or []
    if unsupported:
        lines.append(f"\n_{_UNSUPPORTED[language]}: {', '.join(unsupported)}_")
    return "\n".join(lines)


def earlier_turns(messages: list[ChatMessage]) -> list[tuple[str, str]]:
    """(question, answer) pairs of the conversation before its last message, the answers without
    the sources block ``after_answer`` added."""
    turns = []
    for asked, answered in pairwise(messages[:-1]):
        if asked.type == "human" and answered.type == "ai":
            turns.append((asked.content, answered.content.split("\n\n---\n", 1)[0]))
    return turns
