"""The line check of a streamed answer: what is shown, what is held back, what is shown instead.

``LineGate`` shows a model's answer as soon as it is safe and stops at the first line that names
what no section holds (``chains.grounding``); ``grounded`` runs it over the chain's output stream
and, once it is complete, adds what replaces the removed lines and the grounding report.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Iterator

from langchain_core.documents import Document
from langchain_core.runnables import Runnable, RunnableGenerator
from langchain_core.runnables.utils import AddableDict

from erp_chatbot.chains.excerpts import best_excerpt
from erp_chatbot.chains.grounding import check_grounding
from erp_chatbot.chains.language import Language
from erp_chatbot.chains.prompts import SENTENCE_END, VAGUE_NOTE


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
            if self.removed:
                break
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
    if not text.strip() or text.endswith("\n\n"):
        return ""
    return "\n" if text.endswith("\n") else "\n\n"


def _not_yet_shown(faithful: str, shown: str) -> str:
    """``faithful`` without the opening paragraphs ``shown`` already holds (a translated answer's lead)."""
    paragraphs, seen = faithful.split("\n\n"), shown.split("\n\n")
    same = 0
    while same < min(len(paragraphs), len(seen)) and paragraphs[same].strip() == seen[same].strip():
        same += 1
    return "\n\n".join(paragraphs[same:])


# Where a claim may begin (chains.grounding): a marked name, a quote, a number, a menu separator.
_CLAIM_START = re.compile(r"[*`\"“\d‣›»>→]|->")


def grounded(
    documents: list[Document],
    language: Language,
    question: str = "",
    query: str = "",
    faithful: str = "",
    halt: threading.Event | None = None,
) -> Runnable:
    """Pass the stream through ``LineGate`` (without ``faithful`` to show instead, nothing is held
    back); once complete, or from the first removed line on (``halt`` is then set), replace what was
    removed by ``faithful`` and report the grounding of what was shown."""

    def finish(gate: LineGate) -> Iterator[AddableDict]:
        if halt is not None and gate.removed:
            halt.set()
        tail = gate.close()
        if tail:
            yield AddableDict(answer=tail)
        grounding = check_grounding(gate.shown, documents, question, gate.removed)
        note = ""
        if gate.removed and faithful:
            note = _paragraph_after(gate.shown) + _not_yet_shown(faithful, gate.shown)
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
            if gate.removed:
                break
        yield from finish(gate)

    async def aground(chunks: AsyncIterator[dict]) -> AsyncIterator[AddableDict]:
        gate = LineGate(documents, question, gated=bool(faithful))
        async for chunk in chunks:
            yield shown(chunk, gate)
            if gate.removed:
                break
        for chunk in finish(gate):
            yield chunk

    return RunnableGenerator(ground, aground)
