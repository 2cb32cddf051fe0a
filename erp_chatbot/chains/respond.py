"""The answer step: decline, extract, or generate and check, streamed as the chain's output.

Output (dict chunks, ``answer`` streamed)::

    {"question", "standalone_question", "language", "sources", "retrieval_seconds", "support", "cached",
     "answer", "grounding"}

``sources`` are exactly the sections the answer was made from. ``grounding`` comes last
(``chains.grounding``). A generated answer streams through ``chains.line_gate.LineGate``: a line
that names a menu, button, field or number no section holds, or repeats the prompt's worked
example, is not shown, nor is anything after it (the model stops generating); the user gets the
best sections in the documents' own words instead (``passages.faithful_answer``), and grounding
lists the lines as ``removed``. A supported answer that names nothing at all (``vague``) is
followed by the passage of the best page that says how. With ``answer.passage_language:
question``, the model translates an extracted section written in another language than the
question's, and the translation is checked in the same way.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseLanguageModel
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator, RunnableLambda, RunnablePassthrough

from erp_chatbot.chains.language import Language, detect_language
from erp_chatbot.chains.line_gate import grounded
from erp_chatbot.chains.passages import Extract, faithful_answer
from erp_chatbot.chains.prompts import (
    COVERAGE,
    NOT_COVERED,
    TRANSLATE_PASSAGE,
    TRANSLATION_TARGET,
    answer_prompt,
    format_context,
)
from erp_chatbot.chains.turn import RagOptions, Turn
from erp_chatbot.knowledge.injection import repeats_instruction
from erp_chatbot.runtime.cache import AnswerCache

ANSWER_TAG = "erp-answer"  # marks the answering LLM call for callbacks (metrics)
OUTPUT_KEYS = [
    "question",
    "standalone_question",
    "language",
    "sources",
    "retrieval_seconds",
    "support",
    "cached",
    "answer",
]
# How a chunk is shown to the model, in cache keys: answers given from another layout are not reused.
CONTEXT_SHAPE = format_context([Document("Page > Part\nText.", metadata={"title": "Page", "section": "Part"})])


def merge_chunks(final: dict, chunk: dict) -> dict:
    """A streamed output so far plus its next chunk: answer text is appended, the rest replaced."""
    merged = dict(final)
    for key, value in chunk.items():
        merged[key] = merged[key] + value if key == "answer" and key in merged else value
    return merged


def sources_of(documents: list[Document]) -> list[dict[str, Any]]:
    """One entry per source page, best score first, as shown to users and cited in answers."""
    best: dict[str, dict[str, Any]] = {}
    for doc in documents:
        source = doc.metadata.get("source", "")
        score = float(doc.metadata.get("score", 0.0))
        if source not in best or score > best[source]["score"]:
            best[source] = {"source": source, "title": doc.metadata.get("title", source), "score": score}
    return sorted(best.values(), key=lambda s: s["score"], reverse=True)


def prompt_id(language: Language, options: RagOptions) -> str:
    """What besides the question and sections fixes an answer: part of the response cache's keys."""
    check = language in options.check_coverage and COVERAGE[options.coverage_question][language]
    shape = f"{options.mode}|{options.passage_language}|{answer_prompt(language)!r}|{CONTEXT_SHAPE}"
    return f"{shape}|{options.document_tokens}|{check!r}"


def respond(
    turn: Turn,
    config: RunnableConfig,
    *,
    llm: BaseLanguageModel,
    cache: AnswerCache | None,
    options: RagOptions,
    answer_key: Callable[[Turn], tuple[str, str]],
) -> Runnable:
    """The runnable that answers this turn: a decline, the extracted section, a cached or a new answer."""
    language = detect_language(turn["question"], options.default_language)
    documents = turn["documents"] if turn["covered"] else []
    faithful = faithful_answer(documents, language, options.passage_chars, options.passages)
    shown = faithful.sections if options.mode == "extract" else documents
    base = {
        "question": turn["question"],
        "standalone_question": turn["standalone_question"].strip(),
        "language": language,
        "sources": sources_of(shown),
        "retrieval_seconds": turn["retrieval_seconds"],
        "support": None if turn.get("support") is None else round(turn["support"], 4),
        "cached": False,
    }
    if not documents:
        return _fixed({**base, "answer": NOT_COVERED[language]}) | grounded([], language, turn["question"])
    query = " ".join([base["standalone_question"], *(turn.get("variants") or [])])
    translating = options.mode == "extract" and options.passage_language == "question"
    parts = _passage_parts(faithful, language) if translating else []
    if options.mode == "extract" and all(prompt is None for _, prompt in parts):  # the documents' own words
        return _fixed({**base, "answer": faithful.text}) | grounded(shown, language, turn["question"], query)
    halt = threading.Event()  # set once the line check has removed a line: the model's text is no longer shown
    checked = grounded(shown, language, turn["question"], query, faithful.text, halt)
    if turn.get("cached_answer") is not None:
        return _fixed({**base, "cached": True, "answer": turn["cached_answer"]}) | checked
    if not parts:
        context = {"question": base["standalone_question"], "context": format_context(documents)}
        parts = [("", answer_prompt(language).invoke(context))]
    writer = _written(parts, llm.with_config(tags=[ANSWER_TAG]), halt)
    answering = RunnableLambda(lambda _: base) | RunnablePassthrough.assign(answer=writer).pick(OUTPUT_KEYS)
    if cache is None:
        return answering | checked
    return answering | checked | _store_when_done(cache, answer_key(turn), documents)


def _fixed(output: dict) -> Runnable:
    return RunnableLambda(lambda _: output)


def _model_text(llm: BaseLanguageModel, messages: Any, config: RunnableConfig, halt: threading.Event) -> Iterator[str]:
    """The model's reply as text, left as soon as ``halt`` is set so that the model stops generating
    what nobody will see. Streamed from the model itself: a chain step reads its whole input stream
    even after it has stopped (LangChain's tracing), and the model would write on to its limit."""
    for piece in llm.stream(messages, config):
        yield piece if isinstance(piece, str) else str(piece.content)
        if halt.is_set():
            return


async def _amodel_text(
    llm: BaseLanguageModel, messages: Any, config: RunnableConfig, halt: threading.Event
) -> AsyncIterator[str]:
    async for piece in llm.astream(messages, config):
        yield piece if isinstance(piece, str) else str(piece.content)
        if halt.is_set():
            return


def _passage_parts(faithful: Extract, language: Language) -> list[tuple[str, Any]]:
    """Per section shown: its lead (and its body, when written in the question's language), then the
    prompt that has the model translate its body (``TRANSLATE_PASSAGE``: names kept as written), or None."""
    parts = []
    for number, (lead, body) in enumerate(faithful.blocks):
        opening = ("\n\n" if number else "") + lead + "\n\n"
        if detect_language(body, language) == language:
            parts.append((opening + body, None))
        else:
            parts.append((opening, TRANSLATE_PASSAGE.invoke({"target": TRANSLATION_TARGET[language], "passage": body})))
    return parts


def _written(parts: list[tuple[str, Any]], llm: BaseLanguageModel, halt: threading.Event) -> Runnable:
    """The answer, streamed: each part's fixed text, then the model's reply to its prompt; until ``halt``."""

    def stream(_: Any, config: RunnableConfig) -> Iterator[str]:
        for text, prompt in parts:
            if text:
                yield text
            if prompt is not None:
                yield from _model_text(llm, prompt, config, halt)
            if halt.is_set():
                return

    async def astream(_: Any, config: RunnableConfig) -> AsyncIterator[str]:
        for text, prompt in parts:
            if text:
                yield text
            if prompt is not None:
                async for piece in _amodel_text(llm, prompt, config, halt):
                    yield piece
            if halt.is_set():
                return

    return RunnableLambda(stream, afunc=astream, name="write_answer")


def remember_first_turn(cache: AnswerCache, key: tuple[str, str], documents: list[Document]) -> Runnable:
    """Cache the complete output of a first turn that was answered (declines, flagged answers and
    answers that obeyed a document are not cached)."""

    def remember(final: dict) -> None:
        answered = final.get("answer", "").strip() and not final.get("grounding", {"declined": True})["declined"]
        if answered and _cacheable(final, final["answer"], documents):
            cache.put_turn(key, final)

    return _when_complete(remember)


def _store_when_done(cache: AnswerCache, key: tuple[str, str], documents: list[Document]) -> Runnable:
    """Cache the model's complete answer once it has been checked, unless grounding flagged it: with
    sampling, a flagged answer is one bad draw, and cached it would reach every user for the TTL."""

    def store(final: dict) -> None:
        answer = final.get("answer", "").removesuffix(final.get("grounding", {}).get("note", ""))
        if answer.strip() and _cacheable(final, answer, documents):
            cache.put(key, answer)

    return _when_complete(store)


def _cacheable(final: dict, answer: str, documents: list[Document]) -> bool:
    """Neither flagged by grounding nor repeating what a document told the assistant to say."""
    return not _flagged(final) and not repeats_instruction(answer, documents)


def _flagged(final: dict) -> bool:
    """True when grounding removed or found claims that no section holds. (A vague answer is cached
    with the passage its note quotes: it is short, not wrong.)"""
    return not final.get("grounding", {}).get("supported", True)


def _when_complete(finish: Callable[[dict], None]) -> Runnable:
    """Pass the stream through; once it has ended, call ``finish`` with the complete output."""

    def watch(chunks: Iterator[dict]) -> Iterator[dict]:
        final: dict = {}
        for chunk in chunks:
            final = merge_chunks(final, chunk)
            yield chunk
        finish(final)

    async def awatch(chunks: AsyncIterator[dict]) -> AsyncIterator[dict]:
        final: dict = {}
        async for chunk in chunks:
            final = merge_chunks(final, chunk)
            yield chunk
        finish(final)

    return RunnableGenerator(watch, awatch)
