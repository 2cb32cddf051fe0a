"""What goes in and out of the library and the server: questions, answers, the chain's output.

``check_question`` is the one rule for a usable question (the library, LangServe's input schema and
the OpenAI-compatible route all apply it).
"""

from __future__ import annotations

import time
import unicodedata
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, create_model, model_validator

from erp_chatbot.chains.respond import merge_chunks


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


class ChatMessage(BaseModel):
    """One message of a conversation as chat UIs send it (LangServe's chat playground)."""

    type: Literal["human", "ai", "system"] = Field(description="who said it")
    content: str = Field(max_length=100_000)


class Conversation(BaseModel):
    """What the chat chain takes: the conversation so far, ending with the user's question."""

    messages: list[ChatMessage] = Field(..., min_length=1, max_length=200)

    @model_validator(mode="after")
    def _ends_with_a_question(self) -> Conversation:
        last = self.messages[-1]
        if last.type != "human":
            raise ValueError("the conversation must end with the user's question (a human message)")
        last.content = check_question(last.content)
        return self


def conversation_type(max_chars: int) -> type[Conversation]:
    """``Conversation`` whose question obeys the deployment's length limit (422 otherwise)."""

    class LimitedConversation(Conversation):
        @model_validator(mode="after")
        def _short_enough(self) -> LimitedConversation:
            check_question(self.messages[-1].content, max_chars)
            return self

    LimitedConversation.__name__ = "Conversation"
    return LimitedConversation


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
        None,
        description="the model's P(yes) that the sections answer the question (under answer.decline_below: declined)",
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


class AnswerAssembler:
    """Assembles the ``Answer`` from a streamed turn, noting when its first answer text came."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.first: float | None = None
        self.output: dict = {}

    def add(self, chunk: dict) -> None:
        if chunk.get("answer") and self.first is None:
            self.first = time.perf_counter() - self.start
        self.output = merge_chunks(self.output, chunk)

    def answer(self, session_id: str) -> Answer:
        result = answer_from_output(self.output, session_id, time.perf_counter() - self.start)
        if self.first is not None:
            result.timings["first_token"] = self.first
        return result


def answer_from_output(output: dict, session_id: str, total_seconds: float) -> Answer:
    grounding = output.get("grounding") or {}
    return Answer(
        text=output["answer"].strip(),
        sources=[Source(**s) for s in output["sources"]],
        session_id=session_id,
        language=output["language"],
        standalone_question=output["standalone_question"],
        covered=bool(output["sources"]) and not grounding.get("declined", False),
        grounded=grounding.get("supported", True),
        unsupported=grounding.get("unsupported", []),
        removed=grounding.get("removed", []),
        vague=grounding.get("vague", False),
        support=output.get("support"),
        cached=output.get("cached", False),
        timings={"retrieval": output["retrieval_seconds"], "total": total_seconds},
    )
