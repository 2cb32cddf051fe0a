"""What goes in and out of the library and the server: questions, answers, the chain's output.

``check_question`` is the one rule for a usable question (the library, LangServe's input schema and
the OpenAI-compatible route all apply it).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, create_model


class InvalidQuestion(ValueError):
    """The question is empty, too long, or holds control characters; the message says which."""


def check_question(text: str, max_chars: int | None = None) -> str:
    """The question, stripped; refused when it is empty, too long or holds control characters."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidQuestion("question is empty: ask something, e.g. 'How do I approve a vendor bill?'")
    text = text.strip()
    if max_chars is not None and len(text) > max_chars:
        raise InvalidQuestion(f"question is {len(text)} characters long; the limit is {max_chars}")
    bad = next((c for c in text if c not in "\n\t\r" and unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        raise InvalidQuestion(f"question contains the control character U+{ord(bad):04X}; send plain text")
    return text


class Question(BaseModel):
    """What the chain takes."""

    question: Annotated[str, AfterValidator(check_question)] = Field(
        ..., description="the user's question, in Korean or English"
    )


def question_type(max_chars: int) -> type[Question]:
    """``Question`` with the deployment's length limit, so LangServe refuses longer ones with 422."""
    return create_model(
        "Question",
        __base__=Question,
        question=(
            Annotated[str, AfterValidator(check_question)],
            Field(..., max_length=max_chars, description="the user's question, in Korean or English"),
        ),
    )


class Source(BaseModel):
    source: str
    title: str
    score: float = Field(description="cosine similarity of the best chunk of this page")


class Answer(BaseModel):
    text: str
    sources: list[Source]
    session_id: str
    language: str
    standalone_question: str
    covered: bool = Field(description="False when no document cleared the threshold, or the answer declines")
    grounded: bool = Field(
        True, description="False when the answer states names or numbers no document holds, or lines were removed"
    )
    unsupported: list[str] = Field(default_factory=list, description="those names, menu steps and numbers")
    removed: list[str] = Field(
        default_factory=list, description="steps of the prompt's worked example, unsupported, left out of the text"
    )
    vague: bool = Field(
        False, description="True when the answer names no menu, setting or number; the best chunk is quoted after it"
    )
    support: float | None = Field(
        None, description="share of the question's terms the best section holds (what decides a decline)"
    )
    cached: bool = Field(False, description="True when the response cache answered")
    timings: dict[str, float] = Field(description="seconds: retrieval, total")


class GroundingReport(BaseModel):
    """``chains.grounding.Grounding`` as the chain's output carries it, with the note that followed."""

    declined: bool = Field(description="the answer says the documents do not cover the question")
    supported: bool = Field(
        description="every name, menu step and number it states is in a retrieved chunk, and nothing was removed"
    )
    unsupported: list[str]
    removed: list[str] = Field(default_factory=list, description="worked-example steps left out of the answer")
    vague: bool = Field(False, description="the answer names no menu, setting or number")
    note: str = Field("", description="what followed the model's text: the unsupported names, or the best chunk")


class ChainOutput(BaseModel):
    """What the chain returns (streamed as partial dicts)."""

    question: str
    standalone_question: str
    language: str
    sources: list[Source]
    retrieval_seconds: float
    support: float | None = None
    cached: bool
    answer: str
    grounding: GroundingReport | None = None
