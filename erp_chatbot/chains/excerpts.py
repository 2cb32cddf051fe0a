"""The passage of the retrieved chunks that a grounding note quotes.

A note follows an answer that is wrong or vague, so its quote must show the user where to go. The
best-ranked chunk often opens with its page's title and introduction, the menu path further down or
in the next chunk of the same page (Odoo's "Control and know when vendor bills should be paid":
the intro ranks first, "go to Configuration ‣ Settings … *On received quantities*" comes after).
So the quote is the run of sentences, among the best page's retrieved chunks, that holds a menu
path and the most of the question's terms (``knowledge.lexical.terms``: Korean morphemes and
stemmed English words; a Korean question's English translation counts too). Heading underlines
(``*****``, ``=====``) and a first line that repeats the title are left out: the note names the
title already.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from langchain_core.documents import Document

from erp_chatbot.chains.prompts import SENTENCE_END
from erp_chatbot.knowledge.lexical import terms
from erp_chatbot.knowledge.splitting import body_text

EXCERPT_CHARS = 400  # how much a grounding note quotes
MENU_MARKS = ("‣", " > ")
_UNDERLINE = re.compile(r"\s*([*=\-~^#+`'\"])\1{2,}\s*")  # under (and over) a reStructuredText heading
_PARAGRAPH = re.compile(r"\n\s*\n")


@dataclass(frozen=True)
class Excerpt:
    title: str
    text: str  # with "…" where the chunk goes on before or after


@dataclass(frozen=True)
class _Window:
    text: str
    menu: bool
    matched: int
    rank: int  # the chunk's rank among the page's retrieved chunks
    first: int  # the window's first sentence in its chunk
    cut_after: bool


def best_excerpt(documents: list[Document], query: str, chars: int = EXCERPT_CHARS) -> Excerpt:
    """The quote for a note on an answer given from ``documents`` (best first) to ``query``."""
    best = documents[0]
    page = [doc for doc in documents if doc.metadata.get("source") == best.metadata.get("source")]
    wanted = set(terms(query))
    windows = [window for rank, doc in enumerate(page) for window in _windows(doc, rank, wanted, chars)]
    choice = max(windows, key=lambda w: (w.menu, w.matched, -w.rank, -w.first))
    text = ("…" if choice.first else "") + choice.text + ("…" if choice.cut_after else "")
    return Excerpt(title=best.metadata.get("title") or best.metadata.get("source", ""), text=text)


def sentences(chunk: Document) -> list[str]:
    """The chunk's text in sentences, without its heading line, headings underlined in
    reStructuredText or a first line that repeats the title."""
    lines = body_text(chunk).splitlines()
    kept = [
        line
        for i, line in enumerate(lines)
        if not _UNDERLINE.fullmatch(line) and not (i + 1 < len(lines) and _UNDERLINE.fullmatch(lines[i + 1]))
    ]
    if len(kept) > 1 and kept[0].strip() == chunk.metadata.get("title"):
        kept = kept[1:]
    paragraphs = _PARAGRAPH.split("\n".join(kept))
    found = [part for paragraph in paragraphs for part in SENTENCE_END.split(" ".join(paragraph.split()))]
    return [sentence for sentence in found if sentence] or [" ".join(chunk.page_content.split())]


def _windows(chunk: Document, rank: int, wanted: set[str], chars: int) -> list[_Window]:
    """Every run of whole sentences of ``chunk`` that fits ``chars`` (a longer first sentence is cut)."""
    parts = sentences(chunk)
    found_terms = [wanted.intersection(terms(sentence)) for sentence in parts]
    found = []
    for first in range(len(parts)):
        last = first + 1
        while last < len(parts) and len(" ".join(parts[first : last + 1])) <= chars:
            last += 1
        joined = " ".join(parts[first:last])
        text = joined if len(joined) <= chars else joined[: chars + 1].rsplit(" ", 1)[0][:chars]
        menu = any(mark in text for mark in MENU_MARKS)
        matched = len(set().union(*found_terms[first:last]))
        found.append(_Window(text, menu, matched, rank, first, last < len(parts) or len(joined) > chars))
    return found
