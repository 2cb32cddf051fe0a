"""Is an answer supported by the documents it was given? A cheap, explainable check.

Small models invent menus ("Yahoo"), buttons and numbers. What an ERP user acts on is exactly
those: menu paths, the names of menus, buttons and fields (which answers quote in bold, italics,
quotes or backticks), and numbers. Each such claim must appear in the retrieved chunks (or in the
question); a claim found nowhere makes the answer *unsupported*. Korean answers over English
manuals are checked the same way: their Latin-script names and numbers must appear verbatim,
which the prompts ask for. Prose is not checked: paraphrase is fine, invented names are not;
the one prose exception is a step of the prompt's worked example repeated word for word.

``chains.line_gate.LineGate`` applies the check line by line while an answer streams, so a line
that fails it never reaches the user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from langchain_core.documents import Document

from erp_chatbot.chains.prompts import EXAMPLE_STEPS, NOT_COVERED

_MARKED = re.compile(r"\*\*(.+?)\*\*|(?<![\w*])\*([^*\n]+?)\*(?!\w)|`([^`\n]+)`|\"([^\"\n]{2,80})\"|“([^”\n]{2,80})”")
_MENU_SEPARATOR = re.compile(r"\s*(?:‣|›|»|->|→|>)\s*")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
# A Korean particle written onto a Latin name ("Warehouse를 선택합니다"): the name is the claim.
_PARTICLE = re.compile(r"(?<=[A-Za-z0-9)])[\uac00-\ud7a3]{1,3}$")
# A numbered list's markers ("10. ", "11) ") count steps; they claim nothing.
_LIST_MARKER = re.compile(r"^(\s*)(\d+)([.)])(?=\s)", re.MULTILINE)
# Numbers, also when a Korean unit or particle follows ("100도", "30일"): only Latin letters and
# digits around a number make it part of a word.
_NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d[\d,.]*\d(?![A-Za-z0-9_])|(?<![A-Za-z0-9_.])\d(?![A-Za-z0-9_.,])")
# Sentences (or their core) that say the documents do not answer, as the prompts word them.
_DECLINE = re.compile(
    r"do(?:es)? not (?:cover|contain|mention|provide)|not covered|no information|cannot answer"
    r"|찾지 못|답변할 수 없|답할 수 없|내용이 없|정보가 없",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Grounding:
    """``declined``: the answer says the documents do not cover the question.
    ``unsupported``: claims (names, menu paths, numbers) found in no document nor the question.
    ``claims``: how many claims the answer makes, supported or not."""

    declined: bool
    unsupported: list[str] = field(default_factory=list)
    claims: int = 0
    removed: list[str] = field(default_factory=list)  # lines left out of the answer (chains.line_gate.LineGate)

    @property
    def supported(self) -> bool:
        return not self.unsupported and not self.removed

    @property
    def vague(self) -> bool:
        """Names no menu, setting or number at all ("네, 그런 기능이 있습니다"): nothing is wrong, but
        nothing tells the user where to go either."""
        return not self.declined and self.claims == 0

    def as_dict(self) -> dict:
        return {
            "declined": self.declined,
            "supported": self.supported,
            "vague": self.vague,
            "unsupported": self.unsupported,
            "removed": self.removed,
        }


def check_grounding(
    answer: str, documents: list[Document], question: str = "", removed: list[str] | None = None
) -> Grounding:
    """``removed``: lines left out of ``answer`` as they streamed; they make it unsupported too."""
    if declines(answer):
        return Grounding(declined=True)
    evidence = _normalise(" ".join([question, *(d.page_content for d in documents)]))
    claims = claims_of(answer)
    if not _HANGUL.search(evidence):  # a Korean answer may translate names of an English manual
        claims = [claim for claim in claims if not _HANGUL.search(claim)]
    unsupported = [claim for claim in claims if not _appears(claim, evidence)]
    unsupported += [step for step in copied_example_steps(answer, evidence) if step not in unsupported]
    return Grounding(declined=False, unsupported=unsupported, claims=len(claims), removed=list(removed or []))


def copied_example_steps(answer: str, evidence: str) -> list[str]:
    """Prose steps of the prompt's worked answer repeated in this one that no document says: they
    describe the invented example, not the user's question. (Steps naming menus or buttons are left
    to the claims: "**Approve** 버튼을 클릭합니다" is right where the documents have an Approve button.)"""
    text = _normalise(answer)
    return [step for step, said in _EXAMPLE_PROSE.items() if said in text and said not in evidence]


def declines(answer: str) -> bool:
    """True when the answer is (or opens with) a statement that the documents do not answer."""
    text = answer.strip()
    if any(sentence in text for sentence in NOT_COVERED.values()):
        return True
    first = re.split(r"(?<=[.!?。])\s|\n", text, maxsplit=1)[0]
    return bool(_DECLINE.search(first))


def claims_of(answer: str) -> list[str]:
    """Names quoted or emphasised, each step of a menu path, and numbers, in order, once each."""
    found: list[str] = []
    for match in _MARKED.finditer(answer):
        marked = next(group for group in match.groups() if group)
        found += [part for part in _MENU_SEPARATOR.split(marked) if part.strip()]
    plain = _MARKED.sub(" ", answer)
    for line in plain.splitlines():
        parts = _MENU_SEPARATOR.split(line)
        if len(parts) > 1:  # unmarked menu path: the words next to each separator
            found += [_edge_words(part, i) for i, part in enumerate(parts)]
    found += _NUMBER.findall(_LIST_MARKER.sub(" ", plain))
    cleaned = (_PARTICLE.sub("", c.strip(" .,:;!?()[]'\"")).strip() for c in found)
    return list(dict.fromkeys(c for c in cleaned if c))


def _edge_words(part: str, position: int) -> str:
    """The capitalised words of a path step next to its separator, within its clause ("Go to Sales"
    -> "Sales"; "Stages. Then, create" -> "Stages": a sentence goes on after the path)."""
    picked: list[str] = []
    for word in part.split() if position else reversed(part.split()):
        clean = word.strip("()[]{}.,:;!?'\"")
        ends_clause = word.rstrip("()[]'\"").endswith((".", ",", ":", ";", "!", "?"))
        if not clean[:1].isupper() or (ends_clause and not position and picked):
            break
        picked.append(clean)
        if ends_clause and position:
            break
    return " ".join(picked if position else reversed(picked))


def _appears(claim: str, evidence: str) -> bool:
    """As whole words: "3" is not found in "30", nor "Refund" in "Refunds"."""
    edge = r"A-Za-z0-9_" if claim[:1].isdigit() else r"\w"
    return re.search(rf"(?<![{edge}]){re.escape(_normalise(claim))}(?![{edge}])", evidence) is not None


def _normalise(text: str) -> str:
    text = text.replace("*", " ").replace("`", " ").replace("’", "'").lower()
    return " ".join(text.split())


# The worked example's steps that name nothing (those that do are claims), each with its normalised text.
_EXAMPLE_PROSE = {step: _normalise(step) for step in EXAMPLE_STEPS if not claims_of(step)}
