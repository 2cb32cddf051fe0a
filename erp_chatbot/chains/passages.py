"""Passages: the whole sections an answer is made of, and the answer in the documents' own words.

Retrieval ranks chunks; a user needs the section they belong to, whole (a menu path in one chunk,
its steps in the next). ``whole_sections`` turns the ranked chunks into ranked sections.
``faithful_answer`` is the extract mode's answer: the best sections as the documents write them,
each under a short lead in the question's language naming its heading, so nothing in it is
invented.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.documents import Document

from erp_chatbot.chains.language import Language
from erp_chatbot.knowledge.splitting import body_text

LEAD = {  # the one sentence of an extracted answer in the question's language
    "en": "The documents explain this in {heading}:",
    "ko": "문서의 {heading} 부분에 나와 있습니다:",
}
MORE = {  # the lead of each further section
    "en": "See also {heading}:",
    "ko": "관련 내용은 {heading} 부분에 있습니다:",
}
_MIN_SECTION_CHARS = 200  # a further section gets at least this much room, or is left out
_BLOCK_BREAK = re.compile(r"\n[ \t]*\n")


def whole_sections(chunks: list[Document], section_of: Callable[[Document], list[Document]] | None) -> list[Document]:
    """One document per section, in the rank of its best chunk, holding the section's chunks in order
    (the retrieval metadata of its best chunk; ``chunk_id`` names the pieces together)."""
    if section_of is None:
        return chunks
    found: dict[tuple[str, str], Document] = {}
    for chunk in chunks:
        key = (chunk.metadata.get("source", ""), chunk.metadata.get("section", ""))
        if key in found:
            continue
        pieces = section_of(chunk) or [chunk]
        found[key] = _joined(chunk, pieces)
    return list(found.values())


def _joined(best: Document, pieces: list[Document]) -> Document:
    if len(pieces) == 1:
        return best
    heading, _, _ = best.page_content.partition("\n")
    bodies = [body_text(piece) for piece in pieces]
    ids = [str(piece.metadata.get("chunk_id", piece.id)) for piece in pieces]
    metadata = {**best.metadata, "chunk_id": hashlib.sha256("+".join(ids).encode()).hexdigest()[:32]}
    return Document(heading + "\n" + "\n\n".join(bodies), id=best.id, metadata=metadata)


@dataclass(frozen=True)
class Extract:
    sections: list[Document]  # the sections the text shows, best first: the answer's sources
    blocks: list[tuple[str, str]]  # per section shown: its lead and its body

    @property
    def text(self) -> str:
        return "\n\n".join(part for block in self.blocks for part in block)


def faithful_answer(sections: list[Document], language: Language, max_chars: int, count: int = 2) -> Extract:
    """The best ``count`` sections, each under a lead naming its heading, their text in whole blocks
    within about ``max_chars`` together (a first block longer than that, such as a long numbered
    list, is shown whole up to twice that)."""
    blocks: list[tuple[str, str]] = []
    shown: list[Document] = []
    room = max_chars
    for section in sections[:count]:
        if shown and room < _MIN_SECTION_CHARS:
            break
        lead = (MORE if shown else LEAD)[language].format(heading=heading_of(section))
        body = body_of(section, room)
        blocks.append((lead, body))
        shown.append(section)
        room -= len(body)
    return Extract(shown, blocks)


def heading_of(section: Document) -> str:
    """``*title* — *section*``: each part as the section's heading line writes it, so grounding finds it."""
    parts = [section.metadata.get("title") or section.metadata.get("source", ""), section.metadata.get("section")]
    return " — ".join(f"*{part.replace('*', '')}*" for part in parts if part)


def body_of(section: Document, max_chars: int) -> str:
    """The section's text without its heading line, cut between blocks."""
    body = body_text(section)
    kept: list[str] = []
    used = 0
    for block in (b.strip("\n") for b in _BLOCK_BREAK.split(body.strip()) if b.strip()):
        if kept and used + len(block) > max_chars:
            return "\n\n".join(kept) + "\n\n…"
        kept.append(block if kept or len(block) <= 2 * max_chars else block[: 2 * max_chars].rsplit(" ", 1)[0] + " …")
        used += len(block)
    return "\n\n".join(kept)
