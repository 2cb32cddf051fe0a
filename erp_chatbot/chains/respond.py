"""The answer step: decline, extract, or generate and check, streamed as the chain's output.

Output (dict chunks, ``answer`` streamed)::

    {"question", "standalone_question", "language", "sources", "retrieval_seconds", "support", "cached",
     "answer", "grounding"}

``sources`` are exactly the sections the answer was made from. ``grounding`` comes last
(``chains.grounding``). A generated answer streams through ``LineGate``: a line that names a menu,
button, field or number no section holds, or repeats the prompt's worked example, is not shown,
nor is anything after it; the user gets the best sections in the documents' own words instead
(``passages.faithful_answer``), and grounding lists the lines as ``removed``. A supported answer
that names nothing at all (``vague``) is followed by the passage of the best page that says how.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator, RunnableLambda, RunnablePassthrough
from langchain_core.runnables.utils import AddableDict

from erp_chatbot.chains.excerpts import best_excerpt
from erp_chatbot.chains.grounding import check_grounding
from erp_chatbot.chains.language import Language, detect_language
from erp_chatbot.chains.passages import faithful_answer
from erp_chatbot.chains.prompts import COVERAGE, NOT_COVERED, SENTENCE_END, VAGUE_NOTE, answer_prompt, format_context
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
    return f"{options.mode}|{answer_prompt(language)!r}|{CONTEXT_SHAPE}|{options.document_tokens}|{check!r}"


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
    if options.mode == "extract":  # the documents' own words: checked, never gated
        return _fixed({**base, "answer": faithful.text}) | grounded(shown, language, turn["question"], query)
    checked = grounded(shown, language, turn["question"], query, faithful.text)
    if turn.get("cached_answer") is not None:
        return _fixed({**base, "cached": True, "answer": turn["cached_answer"]}) | checked
    prompt_input = {"question": base["standalone_question"], "context": format_context(documents)}
    generate = (
        RunnableLambda(lambda _: prompt_input) | answer_prompt(language) | llm.with_config(tags=[ANSWER_TAG])
    ) | StrOutputParser()
    answering = RunnableLambda(lambda _: base) | RunnablePassthrough.assign(answer=generate).pick(OUTPUT_KEYS)
    if cache is None:
        return answering | checked
    return answering | checked | _store_when_done(cache, answer_key(turn), documents)


def _fixed(output: dict) -> Runnable:
    return RunnableLambda(lambda _: output)


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


class LineGate:
    """Shows a streamed answer as soon as it is safe: a line that names nothing (no marked name, menu
    path or number) streams sentence by sentence; from the first sign of a claim on, the line waits
    until it is complete and is shown only if ``documents`` hold what it names. From the first line
    that fails, nothing more of the answer is shown (``removed`` lists those lines). With ``gated``
    false everything is shown at once and only recorded."""

    def __init__(self, documents: list[Document], question: str, gated: bool = True) -> None:
        self._documents, self._question, self._gated = documents, question, gated
        self._line = ""  # the current line so far
        self._released = 0  # how much of it is shown
        self.shown = ""
        self.removed: list[str] = []

    def feed(self, text: str) -> str:
        if self.removed:
            return ""
        if not self._gated:
            return self._show(text)
        out = []
        for part in text.splitlines(keepends=True):
            self._line += part
            out.append(self._end_line() if self._line.endswith("\n") else self._safe_part())
        return "".join(out)

    def close(self) -> str:
        return self._end_line() if self._line and not self.removed else ""

    def _safe_part(self) -> str:
        """The line's next whole sentences before anything that may be a claim."""
        risky = _CLAIM_START.search(self._line)
        before = self._line[: risky.start() if risky else len(self._line)]
        ends = [match.end() for match in SENTENCE_END.finditer(before)]
        if not ends or ends[-1] <= self._released:
            return ""
        part, self._released = self._line[self._released : ends[-1]], ends[-1]
        return self._show(part)

    def _end_line(self) -> str:
        line, rest = self._line, self._line[self._released :]
        self._line, self._released = "", 0
        if check_grounding(line, self._documents, self._question).supported:
            return self._show(rest)
        self.removed.append(line.strip())
        return ""

    def _show(self, text: str) -> str:
        self.shown += text
        return text


def _paragraph_after(text: str) -> str:
    """What starts a new paragraph after ``text``."""
    if not text.strip():
        return ""
    return "\n" if text.endswith("\n") else "\n\n"


# Where a claim may begin (chains.grounding): a marked name, a quote, a number, a menu separator.
_CLAIM_START = re.compile(r"[*`\"“\d‣›»>→]|->")


def grounded(
    documents: list[Document], language: Language, question: str = "", query: str = "", faithful: str = ""
) -> Runnable:
    """Pass the stream through ``LineGate`` (without ``faithful`` to show instead, nothing is held
    back); once complete, replace what was removed by ``faithful`` and report the grounding of what
    was shown."""

    def finish(gate: LineGate) -> Iterator[AddableDict]:
        tail = gate.close()
        if tail:
            yield AddableDict(answer=tail)
        grounding = check_grounding(gate.shown, documents, question, gate.removed)
        note = ""
        if gate.removed and faithful:
            note = _paragraph_after(gate.shown) + faithful
        elif grounding.vague and documents:
            excerpt = best_excerpt(documents, query)
            note = VAGUE_NOTE[language].format(title=excerpt.title, excerpt=excerpt.text)
        if note:
            yield AddableDict(answer=note)
        yield AddableDict(grounding={**grounding.as_dict(), "note": note})

    def shown(chunk: dict, gate: LineGate) -> AddableDict:
        return AddableDict({**chunk, "answer": gate.feed(chunk["answer"])} if "answer" in chunk else chunk)

    def ground(chunks: Iterator[dict]) -> Iterator[AddableDict]:
        gate = LineGate(documents, question, gated=bool(faithful))
        for chunk in chunks:
            yield shown(chunk, gate)
        yield from finish(gate)

    async def aground(chunks: AsyncIterator[dict]) -> AsyncIterator[AddableDict]:
        gate = LineGate(documents, question, gated=bool(faithful))
        async for chunk in chunks:
            yield shown(chunk, gate)
        for chunk in finish(gate):
            yield chunk

    return RunnableGenerator(ground, aground)
