"""The answer chain, in plain LCEL: load history -> condense -> translate -> retrieve -> judge ->
respond -> record.

Input ``{"question": str}``; the session comes from ``config["configurable"]["session_id"]`` and
the caller's roles, which limit what retrieval may return, from ``config["configurable"]["roles"]``.
Each step is a function of the typed ``Turn`` (``chains.steps``, ``chains.respond``); this module
binds them to their parts and runs them in order. The output is described in ``chains.respond``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from functools import partial
from typing import Any

from langchain_core.language_models import BaseLanguageModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableGenerator, RunnableLambda, RunnablePassthrough

from erp_chatbot.chains import excerpts, grounding, passages, respond, steps
from erp_chatbot.chains.passages import LEAD
from erp_chatbot.chains.prompts import ANSWER, CONDENSE, COVERAGE, NOT_COVERED, TRANSLATE, VAGUE_NOTE
from erp_chatbot.chains.respond import CONTEXT_SHAPE, remember_first_turn
from erp_chatbot.chains.translation import build_translator
from erp_chatbot.chains.turn import RagOptions, Turn, YesProbability
from erp_chatbot.memory.history import ChatHistoryStore
from erp_chatbot.runtime.cache import AnswerCache


def build_rag_chain(
    llm: BaseLanguageModel,
    retriever: BaseRetriever,
    history: ChatHistoryStore,
    options: RagOptions | None = None,
    *,
    rewriter: Runnable | None = None,
    yes_probability: YesProbability | None = None,
    cache: AnswerCache | None = None,
) -> Runnable[dict, dict]:
    """``rewriter`` condenses follow-ups and translates questions (default: ``llm``; a short, greedy
    variant suits it). ``yes_probability`` (``models.llm.yes_probability``) answers the coverage
    check for ``options.check_coverage`` languages. With ``cache``, an answer already given for the
    same question, sections, index version, model and prompt is reused, and each session's first
    turn is stored whole under ``cache.turn_key`` with ``options.chain_id``
    (``chain_fingerprint``), which ``server.cached_turns.cached_first_turn`` serves without the chain."""
    options = options or RagOptions()
    rewrite = CONDENSE | (rewriter or llm) | StrOutputParser()
    translator = build_translator(rewriter or llm, options.glossary) if options.translate else None
    key = partial(steps.answer_key, cache=cache, options=options) if cache else None
    return (
        RunnablePassthrough.assign(history=_step(steps.load_history, history=history))
        | RunnablePassthrough.assign(standalone_question=_step(steps.condense, rewrite=rewrite))
        | RunnablePassthrough.assign(variants=_step(steps.translate, translator=translator))
        | _adding(steps.retrieve, retriever=retriever, options=options)
        | _adding(steps.judge, yes_probability=yes_probability, cache=cache, options=options)
        | RunnableLambda(partial(_answer, llm=llm, cache=cache, options=options, answer_key=key), name="respond")
        | RunnableGenerator(partial(steps.record, history=history), partial(steps.arecord, history=history))
    ).with_config(run_name="erp_rag")


def _step(function: Any, **parts: Any) -> RunnableLambda:
    """A step bound to its parts, named for it (the names show in traces and ``stream_log``)."""
    return RunnableLambda(partial(function, **parts), name=function.__name__)


def _adding(function: Any, **parts: Any) -> RunnableLambda:
    """A step whose keys are added to the turn."""
    step = partial(function, **parts)

    def add(turn: Turn, config: RunnableConfig) -> Turn:
        return {**turn, **step(turn, config)}

    return RunnableLambda(add, name=function.__name__)


def _answer(turn: Turn, config: RunnableConfig, *, cache: AnswerCache | None, options: RagOptions, **parts: Any):
    """``respond``, and on a session's first turn, remember the whole output in the cache."""
    answering = respond.respond(turn, config, cache=cache, options=options, **parts)
    if cache is None or turn["history"]:
        return answering
    roles = (config.get("configurable") or {}).get("roles")
    key = cache.turn_key(turn["question"], roles, options.index_version(), options.chain_id)
    return answering | remember_first_turn(cache, key, turn["documents"])


def chain_fingerprint(**settings: Any) -> str:
    """What besides the question, roles, index and model fixes a first turn: the chain's
    ``settings`` (retrieval, answer mode, prompt budget, translation), its prompts and notes, and
    the source of the modules that make the text shown (cached first turns keep the text they were
    made with, so any change to that code must change the key)."""
    prompts = [repr(prompt[language]) for prompt in (ANSWER, *COVERAGE.values()) for language in sorted(NOT_COVERED)]
    prompts += [repr(CONDENSE), repr(TRANSLATE), CONTEXT_SHAPE, repr(VAGUE_NOTE), repr(LEAD)]
    # the code that turns sections into the text shown: a change to it is a new chain
    code = [inspect.getsource(module) for module in (excerpts, grounding, passages, respond)]
    material = json.dumps({"settings": settings, "prompts": prompts, "code": code}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:16]
