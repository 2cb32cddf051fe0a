"""condense -> retrieve -> answer (or decline) -> record the turn, in plain LCEL.

Input ``{"question": str}``; the session comes from ``config["configurable"]["session_id"]`` and
the caller's roles, which limit what retrieval may return, from ``config["configurable"]["roles"]``.
Output (streamed as dict chunks, the ``answer`` token by token)::

    {"question", "standalone_question", "language", "sources", "retrieval_seconds", "cached", "answer",
     "grounding"}

``grounding`` comes last, once the answer is complete (``chains.grounding``): whether the answer
declines, the names, menu steps and numbers it states that no retrieved chunk holds, and the
``note`` that followed the model's text (empty when none did). An unsupported answer is followed
by a note that names them and quotes the best chunk instead; a vague one (it names no menu,
setting or number) by the best chunk, where the documents say how. Lines that repeat the prompt's
worked example, unsupported, are left out as the answer streams (``ExampleCopies``); grounding
lists them as ``removed``.

The first turn of a session skips the condensing LLM call; when no chunk clears the retriever's
threshold, or the optional coverage check says the chunks do not answer the question, the answer
says the documents do not cover it, without generating one.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from operator import itemgetter
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseLanguageModel
from langchain_core.messages import BaseMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import (
    Runnable,
    RunnableConfig,
    RunnableGenerator,
    RunnableLambda,
    RunnablePassthrough,
)
from langchain_core.runnables.config import run_in_executor
from langchain_core.runnables.utils import AddableDict

from erp_chatbot.chains.excerpts import EXCERPT_CHARS, EXCERPT_RULES, best_excerpt
from erp_chatbot.chains.grounding import ExampleCopies, Grounding, check_grounding
from erp_chatbot.chains.language import Language, detect_language
from erp_chatbot.chains.prompts import (
    ANSWER,
    CONDENSE,
    COVERAGE,
    NOT_COVERED,
    REMOVED_NOTE,
    TRANSLATE,
    UNSUPPORTED_NOTE,
    VAGUE_NOTE,
    CoverageQuestion,
    answer_prompt,
    fit_context,
    format_context,
    format_conversation,
)
from erp_chatbot.chains.translation import Glossary, build_translator
from erp_chatbot.memory.history import ChatHistoryStore, InvalidSessionId
from erp_chatbot.runtime.cache import AnswerCache

ANSWER_TAG = "erp-answer"  # marks the answering LLM call for callbacks (metrics)
OUTPUT_KEYS = ["question", "standalone_question", "language", "sources", "retrieval_seconds", "cached", "answer"]
# How a chunk is shown to the model, in cache keys: answers given from another layout are not reused.
CONTEXT_SHAPE = format_context([Document("Page > Part\nText.", metadata={"title": "Page", "section": "Part"})])


def session_id_from(config: RunnableConfig) -> str:
    session_id = (config.get("configurable") or {}).get("session_id")
    if not session_id:
        raise InvalidSessionId('session_id is required: pass config={"configurable": {"session_id": "..."}}')
    return session_id


def sources_of(documents: list[Document]) -> list[dict[str, Any]]:
    """One entry per source page, best score first, as shown to users and cited in answers."""
    best: dict[str, dict[str, Any]] = {}
    for doc in documents:
        source = doc.metadata.get("source", "")
        score = float(doc.metadata.get("score", 0.0))
        if source not in best or score > best[source]["score"]:
            best[source] = {"source": source, "title": doc.metadata.get("title", source), "score": score}
    return sorted(best.values(), key=lambda s: s["score"], reverse=True)


def build_rag_chain(
    llm: BaseLanguageModel,
    retriever: BaseRetriever,
    history: ChatHistoryStore,
    default_language: Language = "ko",
    rewriter: Runnable | None = None,
    cache: AnswerCache | None = None,
    index_version: Callable[[], str] = lambda: "",
    chain_id: str = "",
    translate: bool = False,
    glossary: Glossary | None = None,
    document_tokens: int | None = None,
    count_tokens: Callable[[str], int] = lambda text: len(text.split()),
    judge: Runnable | None = None,
    check_coverage: Sequence[Language] = (),
    coverage_question: CoverageQuestion = "documents",
) -> Runnable[dict, dict]:
    """``rewriter`` condenses follow-ups (default: ``llm``); a short, greedy variant suits it.

    With ``translate``, the rewriter also translates a Korean standalone question into English and
    retrieval searches both, so Korean questions find English pages; ``glossary`` gives the
    translator the manual's words for the ERP terms a question holds.

    ``document_tokens`` bounds the retrieved text in the prompt (``fit_context``, counted with
    ``count_tokens``); the answer's sources are the chunks the model was given.

    For questions in the ``check_coverage`` languages, ``judge`` (the model, greedy, capped at a few
    tokens) first says whether those chunks answer the question (``COVERAGE[coverage_question]``); a
    "no" gets the documents-do-not-cover answer.

    With ``cache``, an answer already given for the same normalised question, retrieved chunks,
    index version (``index_version()``), model and prompt is returned without calling the LLM, and
    each session's first turn is stored whole under ``cache.turn_key`` with ``chain_id``
    (``chain_fingerprint``: what else fixes that turn's retrieval and prompt), which
    ``ERPChatbot.cached_first_turn`` serves without running the chain.
    """
    condense = CONDENSE | (rewriter or llm) | StrOutputParser()
    translator = build_translator(rewriter or llm, glossary)
    judge_prompt = COVERAGE[coverage_question]
    checks = {language: language in check_coverage and judge_prompt[language] for language in NOT_COVERED}
    # part of cache keys: the prompt, how much retrieved text it holds and the check before it
    prompt_ids = {
        language: f"{answer_prompt(language)!r}|{CONTEXT_SHAPE}|{document_tokens}|{checks[language]!r}"
        for language in NOT_COVERED
    }

    def load_history(inputs: dict, config: RunnableConfig) -> list:
        return history.messages(session_id_from(config))

    def standalone(inputs: dict, config: RunnableConfig) -> str:
        if not inputs["history"]:
            return inputs["question"]
        rewritten = condense.invoke(
            {"conversation": format_conversation(inputs["history"]), "question": inputs["question"]}, config
        )
        return usable_rewrite(rewritten, inputs["question"], inputs["history"])

    def retrieve(inputs: dict, config: RunnableConfig) -> dict:
        start = time.perf_counter()
        roles = (config.get("configurable") or {}).get("roles")
        options = {} if roles is None else {"roles": list(roles)}  # a retriever without roles then refuses
        if inputs.get("variants"):
            options["variants"] = inputs["variants"]
        documents = retriever.invoke(inputs["standalone_question"], config, **options)
        documents = fit_context(documents, document_tokens, count_tokens)
        return {"documents": documents, "retrieval_seconds": time.perf_counter() - start}

    def answer_key(inputs: dict) -> tuple[str, str]:
        language = detect_language(inputs["question"], default_language)
        chunk_ids = [doc.metadata.get("chunk_id", doc.id) for doc in inputs["retrieved"]["documents"]]
        return cache.key(inputs["standalone_question"].strip(), chunk_ids, index_version(), prompt_ids[language])

    def gate(inputs: dict, config: RunnableConfig) -> dict:
        """Adds ``cached_answer`` (or None) and ``covered``: the judge's verdict on the retrieved
        chunks, asked only after a cache miss (declines are never cached)."""
        documents = inputs["retrieved"]["documents"]
        cached = cache.get(answer_key(inputs)) if cache is not None and documents else None
        return {**inputs, "cached_answer": cached, "covered": cached is not None or covered(inputs, config)}

    def covered(inputs: dict, config: RunnableConfig) -> bool:
        """True without a judge, chunks to judge or a check for the question's language."""
        documents = inputs["retrieved"]["documents"]
        language = detect_language(inputs["question"], default_language)
        if judge is None or not documents or language not in check_coverage:
            return True
        question = inputs["standalone_question"].strip()
        translation = f"\n(In English: {inputs['variants'][0]})" if inputs.get("variants") else ""
        prompt_input = {"question": question, "context": format_context(documents), "translation": translation}
        verdict = (judge_prompt[language] | judge | StrOutputParser()).invoke(prompt_input, config)
        return not verdict.strip().lower().startswith("no")

    def answer(inputs: dict, config: RunnableConfig) -> Runnable:
        respond = respond_to(inputs)
        if cache is None or inputs["history"]:
            return respond
        roles = (config.get("configurable") or {}).get("roles")
        key = cache.turn_key(inputs["question"], roles, index_version(), chain_id)
        return respond | _remember_turn(cache, key)

    def respond_to(inputs: dict) -> Runnable:
        language = detect_language(inputs["question"], default_language)
        found = inputs["retrieved"]
        if not inputs["covered"]:
            found = {**found, "documents": []}
        base = {
            "question": inputs["question"],
            "standalone_question": inputs["standalone_question"].strip(),
            "language": language,
            "sources": sources_of(found["documents"]),
            "retrieval_seconds": found["retrieval_seconds"],
            "cached": False,
        }
        if not found["documents"]:
            return RunnableLambda(lambda _: {**base, "answer": NOT_COVERED[language]}) | _grounded([], language)
        query = " ".join([base["standalone_question"], *(inputs.get("variants") or [])])
        grounded = _grounded(found["documents"], language, query)
        prompt = answer_prompt(language)
        prompt_input = {**base, "context": format_context(found["documents"])}
        generate = (
            RunnableLambda(lambda x: {"question": x["standalone_question"], "context": x["context"]})
            | prompt
            | llm.with_config(tags=[ANSWER_TAG])
            | StrOutputParser()
        )
        answering = RunnableLambda(lambda _: prompt_input) | RunnablePassthrough.assign(answer=generate).pick(
            OUTPUT_KEYS
        )
        if cache is None:
            return answering | grounded
        cached = inputs["cached_answer"]
        if cached is not None:
            return RunnableLambda(lambda _: {**base, "cached": True, "answer": cached}) | grounded
        return answering | grounded | _store_when_done(cache, answer_key(inputs))

    def record(chunks: Iterator[dict], config: RunnableConfig) -> Iterator[dict]:
        final: dict = {}
        for chunk in chunks:
            if chunk and chunk != {"answer": ""}:
                final = merge_chunks(final, chunk)
                yield chunk
        history.add_turn(session_id_from(config), final["question"], final.get("answer", ""))

    async def arecord(chunks: AsyncIterator[dict], config: RunnableConfig) -> AsyncIterator[dict]:
        final: dict = {}
        async for chunk in chunks:
            if chunk and chunk != {"answer": ""}:
                final = merge_chunks(final, chunk)
                yield chunk
        await run_in_executor(
            config, history.add_turn, session_id_from(config), final["question"], final.get("answer", "")
        )

    return (
        RunnablePassthrough.assign(history=RunnableLambda(load_history))
        | RunnablePassthrough.assign(standalone_question=RunnableLambda(standalone))
        | RunnablePassthrough.assign(
            variants=(itemgetter("standalone_question") | translator) if translate else RunnableLambda(lambda _: [])
        )
        | RunnablePassthrough.assign(retrieved=RunnableLambda(retrieve))
        | RunnableLambda(gate)
        | RunnableLambda(answer)
        | RunnableGenerator(record, arecord)
    ).with_config(run_name="erp_rag")


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


def _store_when_done(cache: AnswerCache, key: tuple[str, str]) -> Runnable:
    """Cache the complete answer once it has been generated and checked, unless grounding flagged it:
    with sampling, a flagged answer is one bad draw, and cached it would reach every user for the TTL."""

    def store(final: dict) -> None:
        # the model's text: a hit is grounded again, which adds the note again
        answer = final.get("answer", "").removesuffix(final.get("grounding", {}).get("note", ""))
        if answer.strip() and not _flagged(final):
            cache.put(key, answer)

    return _when_complete(store)


def _remember_turn(cache: AnswerCache, key: tuple[str, str]) -> Runnable:
    """Cache the complete output of a first turn that was answered (declines and flagged answers are
    not cached)."""

    def remember(final: dict) -> None:
        answered = final.get("answer", "").strip() and not final.get("grounding", {"declined": True})["declined"]
        if answered and not _flagged(final):
            cache.put_turn(key, final)

    return _when_complete(remember)


def _flagged(final: dict) -> bool:
    """True when grounding found claims in the answer that no retrieved chunk holds. (A vague answer
    is cached, with the chunk its note quotes: it is short, not wrong.)"""
    return not final.get("grounding", {}).get("supported", True)


def chain_fingerprint(**settings: Any) -> str:
    """What besides the question, roles, index and model fixes a first turn: the chain's
    ``settings`` (retrieval, prompt budget, translation), its prompts and its grounding notes."""
    prompts = [repr(prompt[language]) for prompt in (ANSWER, *COVERAGE.values()) for language in sorted(NOT_COVERED)]
    prompts += [repr(TRANSLATE), CONTEXT_SHAPE, repr([UNSUPPORTED_NOTE, REMOVED_NOTE, VAGUE_NOTE])]
    prompts += [f"excerpts {EXCERPT_RULES}, {EXCERPT_CHARS} characters"]
    material = json.dumps({"settings": settings, "prompts": prompts}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def _grounded(documents: list[Document], language: Language, query: str = "") -> Runnable:
    """Pass the stream through, leaving out copies of the worked example (``ExampleCopies``); once the
    answer is complete, check it against ``documents`` (a note quotes the passage that best fits
    ``query``: the question and its translations)."""

    # AddableDict: invoke() adds the streamed chunks up into one output.
    def finish(final: dict, copies: ExampleCopies) -> Iterator[AddableDict]:
        tail = copies.close()
        if tail:
            final = merge_chunks(final, {"answer": tail})
            yield AddableDict(answer=tail)
        grounding = check_grounding(final.get("answer", ""), documents, final.get("question", ""), copies.removed)
        note = grounding_note(grounding, documents, language, query)
        if note:
            yield AddableDict(answer=note)
        yield AddableDict(grounding={**grounding.as_dict(), "note": note})

    def shown(chunk: dict, copies: ExampleCopies) -> dict:
        return {**chunk, "answer": copies.feed(chunk["answer"])} if "answer" in chunk else chunk

    def ground(chunks: Iterator[dict]) -> Iterator[AddableDict]:
        final: dict = {}
        copies = ExampleCopies(documents)
        for chunk in chunks:
            chunk = shown(chunk, copies)
            final = merge_chunks(final, chunk)
            yield AddableDict(chunk)
        yield from finish(final, copies)

    async def aground(chunks: AsyncIterator[dict]) -> AsyncIterator[AddableDict]:
        final: dict = {}
        copies = ExampleCopies(documents)
        async for chunk in chunks:
            chunk = shown(chunk, copies)
            final = merge_chunks(final, chunk)
            yield AddableDict(chunk)
        for chunk in finish(final, copies):
            yield chunk

    return RunnableGenerator(ground, aground)


def grounding_note(grounding: Grounding, documents: list[Document], language: Language, query: str = "") -> str:
    """What follows an answer that is not plainly fine, quoting the passage of the best page that
    holds a menu path and most of ``query``'s terms (``chains.excerpts``): the names the documents
    do not hold, or that steps were left out, or (for a vague answer) where the documents say how.
    Empty for a declined or a supported, specific answer."""
    if grounding.declined or not documents or (grounding.supported and not grounding.vague):
        return ""
    excerpt = best_excerpt(documents, query)
    quote = {"title": excerpt.title, "excerpt": excerpt.text}
    if grounding.unsupported:
        return UNSUPPORTED_NOTE[language].format(unsupported=", ".join(grounding.unsupported[:5]), **quote)
    return (REMOVED_NOTE if grounding.removed else VAGUE_NOTE)[language].format(**quote)


def usable_rewrite(rewritten: str, question: str, history: list[BaseMessage]) -> str:
    """The model's rewrite when it looks like one question in the question's language.

    Small models sometimes answer instead of rewriting; then the previous user question plus the
    follow-up is a safer query than a hallucinated answer.
    """
    candidate = rewritten.strip().strip('"').strip()
    plausible = (
        candidate
        and "\n" not in candidate
        and candidate.endswith(("?", "？"))
        and len(candidate) <= max(200, 3 * len(question))
        and detect_language(candidate) == detect_language(question)
    )
    if plausible:
        return candidate
    previous = next((m.content for m in reversed(history) if m.type == "human"), "")
    return f"{previous} {question}".strip()


def merge_chunks(final: dict, chunk: dict) -> dict:
    """A streamed output so far plus its next chunk: answer text is appended, the rest replaced."""
    merged = dict(final)
    for key, value in chunk.items():
        merged[key] = merged[key] + value if key == "answer" and key in merged else value
    return merged
