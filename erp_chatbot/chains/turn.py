"""What flows through the answer chain: one typed turn, and the options that shape the chain.

Each step of ``chains.rag`` reads a ``Turn`` and adds its own keys, in this order: ``history``
(``load_history``), ``standalone_question`` (``condense``), ``variants`` (``translate``),
``documents`` and ``retrieval_seconds`` (``retrieve``), ``support``, ``covered`` and
``cached_answer`` (``judge``). ``respond`` turns the complete turn into the streamed output.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig

from erp_chatbot.chains.language import Language
from erp_chatbot.chains.prompts import CoverageQuestion
from erp_chatbot.chains.translation import Glossary

AnswerMode = Literal["generate", "extract"]
PassageLanguage = Literal["documents", "question"]
# The model's P(yes) for a yes-or-no prompt (``models.llm.yes_probability``)
YesProbability = Callable[[list[BaseMessage], RunnableConfig | None], float]


class Turn(TypedDict, total=False):
    question: str
    history: list[BaseMessage]
    standalone_question: str
    variants: list[str]  # the question's translation, searched too
    documents: list[Document]  # whole sections, best first: what the answer may use
    retrieval_seconds: float
    support: float | None  # the model's P(yes) that the sections answer the question, when it was asked
    covered: bool
    cached_answer: str | None


def _words(text: str) -> int:
    return len(text.split())


def _no_version() -> str:
    return ""


@dataclass(frozen=True)
class RagOptions:
    """How the chain answers; ``ERPChatbot`` fills it from settings.

    ``mode``: ``generate`` lets the LLM write the answer from the sections; ``extract`` shows the
    best ``passages`` sections (``passage_chars`` in all) in the documents' own words, each under a
    short lead in the question's language; with ``passage_language`` ``question``, the LLM translates
    a section written in another language (names kept as written).
    ``check_coverage``: languages whose questions are put to the model first (do the sections answer
    it?); ``decline_below``: per language, the P(yes) under which they are declined (chosen on an
    evaluation's dev split; 0.5 when unset). In extract mode the model judges the first
    ``judge_tokens`` of the best section; in generate mode, the prompt's sections.
    ``allow_instruction_like``: let chunks marked ``instruction_like`` at ingestion (text that speaks
    to the assistant, ``knowledge.injection``) reach answers.
    ``section_of``: every chunk of a chunk's section (``KnowledgeIndex.section``), so answers use
    whole sections; None uses the retrieved chunks as they are.
    """

    default_language: Language = "ko"
    mode: AnswerMode = "generate"
    translate: bool = False
    glossary: Glossary | None = None
    document_tokens: int | None = None
    count_tokens: Callable[[str], int] = _words
    check_coverage: tuple[Language, ...] = ()
    coverage_question: CoverageQuestion = "documents"
    decline_below: Mapping[str, float] = field(default_factory=dict)
    passage_chars: int = 1200
    passages: int = 2
    passage_language: PassageLanguage = "documents"
    judge_tokens: int = 150
    allow_instruction_like: bool = False
    section_of: Callable[[Document], list[Document]] | None = None
    chain_id: str = ""
    index_version: Callable[[], str] = _no_version
