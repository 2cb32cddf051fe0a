"""The chain's steps before the answer, each a plain function of the ``Turn`` so far.

``load_history`` -> ``condense`` -> ``translate`` -> ``retrieve`` -> ``judge``; ``record`` stores the
turn once the answer has streamed. ``chains.rag`` binds each to its parts and runs them in order.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import run_in_executor

from erp_chatbot.chains.language import detect_language
from erp_chatbot.chains.passages import whole_sections
from erp_chatbot.chains.prompts import COVERAGE, fit_context, format_context, format_conversation
from erp_chatbot.chains.respond import merge_chunks, prompt_id
from erp_chatbot.chains.turn import RagOptions, Turn, YesProbability
from erp_chatbot.knowledge.injection import without_instructions
from erp_chatbot.memory.history import ChatHistoryStore, InvalidSessionId
from erp_chatbot.runtime.cache import AnswerCache


def session_id_from(config: RunnableConfig) -> str:
    session_id = (config.get("configurable") or {}).get("session_id")
    if not session_id:
        raise InvalidSessionId('session_id is required: pass config={"configurable": {"session_id": "..."}}')
    return session_id


def load_history(turn: Turn, config: RunnableConfig, *, history: ChatHistoryStore) -> list[BaseMessage]:
    return history.messages(session_id_from(config))


def condense(turn: Turn, config: RunnableConfig, *, rewrite: Runnable) -> str:
    """The question as one standalone question; a first turn is one already (no LLM call)."""
    if not turn["history"]:
        return turn["question"]
    rewritten = rewrite.invoke(
        {"conversation": format_conversation(turn["history"]), "question": turn["question"]}, config
    )
    return usable_rewrite(rewritten, turn["question"], turn["history"])


def usable_rewrite(rewritten: str, question: str, history: list[BaseMessage]) -> str:
    """The model's rewrite when it looks like one question in the question's language.

    Small models sometimes answer instead of rewriting; then the previous user question plus the
    follow-up is a safer query than a hallucinated answer.
    """
    candidate = rewritten.strip().strip('"').strip()
    plausible = (
        candidate
        and "\n" not in candidate
        and candidate.endswith(("?", "？"))
        and len(candidate) <= max(200, 3 * len(question))
        and detect_language(candidate) == detect_language(question)
    )
    if plausible:
        return candidate
    previous = next((m.content for m in reversed(history) if m.type == "human"), "")
    return f"{previous} {question}".strip()


def translate(turn: Turn, config: RunnableConfig, *, translator: Runnable | None) -> list[str]:
    return translator.invoke(turn["standalone_question"], config) if translator else []


def retrieve(turn: Turn, config: RunnableConfig, *, retriever: BaseRetriever, options: RagOptions) -> dict[str, Any]:
    """The caller may read only what their roles allow; the best whole sections that fit the prompt,
    without passages that speak to the assistant (unless ``allow_instruction_like``)."""
    start = time.perf_counter()
    roles = (config.get("configurable") or {}).get("roles")
    search: dict[str, Any] = {} if roles is None else {"roles": list(roles)}  # a retriever without roles refuses
    if turn.get("variants"):
        search["variants"] = turn["variants"]
    chunks = retriever.invoke(turn["standalone_question"], config, **search)
    section_of = options.section_of
    if not options.allow_instruction_like:
        chunks = _without_instructions(chunks)
        section_of = section_of and (lambda chunk: _without_instructions(options.section_of(chunk)))
    sections = whole_sections(chunks, section_of)
    documents = fit_context(sections, options.document_tokens, options.count_tokens)
    return {"documents": documents, "retrieval_seconds": time.perf_counter() - start}


def _without_instructions(chunks: list[Document]) -> list[Document]:
    """The chunks with the sentences that speak to the assistant taken out (``knowledge.injection``)."""
    return [without_instructions(chunk) if chunk.metadata.get("instruction_like") else chunk for chunk in chunks]


def judge(
    turn: Turn,
    config: RunnableConfig,
    *,
    yes_probability: YesProbability | None,
    cache: AnswerCache | None,
    options: RagOptions,
) -> dict[str, Any]:
    """``support``, ``cached_answer`` and ``covered``: whether the documents answer the question.

    Without a section there is nothing to answer from. For the ``check_coverage`` languages the
    model is asked whether the sections answer the question (``COVERAGE``); ``support`` is its
    P(yes), and under the language's ``decline_below`` (0.5 when unset: its yes-or-no answer) the
    question is declined. A cached answer is reused without asking."""
    documents = turn["documents"]
    if not documents:
        return {"support": None, "cached_answer": None, "covered": False}
    cached = cache.get(answer_key(turn, cache, options)) if cache is not None else None
    language = detect_language(turn["question"], options.default_language)
    if cached is not None or yes_probability is None or language not in options.check_coverage:
        return {"support": None, "cached_answer": cached, "covered": True}
    translation = f"\n(In English: {turn['variants'][0]})" if turn.get("variants") else ""
    prompt = COVERAGE[options.coverage_question][language].format_messages(
        question=turn["standalone_question"].strip(), context=_judged_text(documents, options), translation=translation
    )
    score = yes_probability(prompt, config)
    return {"support": score, "cached_answer": None, "covered": score >= options.decline_below.get(language, 0.5)}


def _judged_text(documents: list[Document], options: RagOptions) -> str:
    """What the model reads to judge: the prompt's sections when it will generate (llama.cpp then
    reuses that evaluated prefix for the answer), else the opening of the best section, which
    separated answerable questions as well on the dev split at a third of the tokens."""
    if options.mode == "generate":
        return format_context(documents)
    return format_context(fit_context(documents[:1], options.judge_tokens, options.count_tokens))


def answer_key(turn: Turn, cache: AnswerCache, options: RagOptions) -> tuple[str, str]:
    language = detect_language(turn["question"], options.default_language)
    chunk_ids = [doc.metadata.get("chunk_id", doc.id) for doc in turn["documents"]]
    return cache.key(
        turn["standalone_question"].strip(), chunk_ids, options.index_version(), prompt_id(language, options)
    )


def record(chunks: Iterator[dict], config: RunnableConfig, *, history: ChatHistoryStore) -> Iterator[dict]:
    """Pass the answer through; once it is complete, store the turn in the session's history."""
    final: dict = {}
    for chunk in chunks:
        if chunk and chunk != {"answer": ""}:
            final = merge_chunks(final, chunk)
            yield chunk
    history.add_turn(session_id_from(config), final["question"], final.get("answer", ""))


async def arecord(
    chunks: AsyncIterator[dict], config: RunnableConfig, *, history: ChatHistoryStore
) -> AsyncIterator[dict]:
    final: dict = {}
    async for chunk in chunks:
        if chunk and chunk != {"answer": ""}:
            final = merge_chunks(final, chunk)
            yield chunk
    await run_in_executor(config, history.add_turn, session_id_from(config), final["question"], final.get("answer", ""))
