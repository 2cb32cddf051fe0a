"""``ERPChatbot``: builds the parts from settings and answers questions.

from erp_chatbot import ERPChatbot
bot = ERPChatbot.from_settings()
print(bot.ask("How do I approve a vendor bill?").text)
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseLanguageModel
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import ConfigurableFieldSpec, Runnable, RunnableBinding, RunnableConfig, RunnableLambda

from erp_chatbot.chains.chat import chat_runnable
from erp_chatbot.chains.rag import build_rag_chain, chain_fingerprint
from erp_chatbot.chains.translation import load_glossary
from erp_chatbot.chains.turn import AnswerMode, RagOptions
from erp_chatbot.devices import CPU_PLACEMENT, LLMPlacement
from erp_chatbot.knowledge import index as index_store
from erp_chatbot.knowledge.index import KnowledgeIndex
from erp_chatbot.memory.history import ChatHistoryStore, build_history, history_state, validate_session_id
from erp_chatbot.models.hot_reload import RegistryFollower
from erp_chatbot.models.llm import greedy_capped, yes_probability
from erp_chatbot.monitoring.metrics import ChatMetrics, MetricsCallbackHandler
from erp_chatbot.retrievers.erp import ERPRetriever
from erp_chatbot.runtime.cache import AnswerCache
from erp_chatbot.schemas import (
    Answer,
    AnswerAssembler,
    ChainOutput,
    answer_from_output,
    check_question,
    conversation_type,
    question_type,
)
from erp_chatbot.settings import Settings

logger = logging.getLogger(__name__)


class _SessionBound(RunnableBinding):
    """Declares ``session_id`` as a configurable field so LangServe and its playground show it."""

    @property
    def config_specs(self) -> list[ConfigurableFieldSpec]:
        return [
            *super().config_specs,
            ConfigurableFieldSpec(
                id="session_id",
                annotation=str,
                name="Session ID",
                description="Conversation id: letters, digits and . _ : @ - (required)",
                default="",
                is_shared=True,
            ),
        ]


class ERPChatbot:
    """The library's front door: ask, stream and batch over the company's ERP documents."""

    def __init__(
        self,
        *,
        settings: Settings,
        llm: BaseLanguageModel,
        embeddings: Embeddings,
        index: KnowledgeIndex,
        history: ChatHistoryStore,
        cache: AnswerCache | None = None,
        model_dir: Path | None = None,
        placement: LLMPlacement | None = None,
    ) -> None:
        self.settings = settings
        self.embeddings = embeddings
        self.index = index
        self.history = history
        self.retriever = ERPRetriever.from_settings(index, embeddings, settings)
        self.model_dir, self._placement = model_dir, placement
        self.metrics = ChatMetrics()
        self._metrics_handler = MetricsCallbackHandler(self.metrics, lambda: self.model_version or "unknown")
        retrieval = settings.retrieval
        self._glossary = load_glossary(retrieval.translation_glossary) if retrieval.translate_queries else None
        self._follower = RegistryFollower(settings.registry_dir, self.reload_model)
        self._install(llm, cache)

    def _install(self, llm: BaseLanguageModel, cache: AnswerCache | None) -> None:
        """Swap in a model: requests already running keep the chain they started with."""
        count_tokens = _token_counter(llm)
        options = self._options(count_tokens)
        chain = build_rag_chain(
            llm,
            self.retriever,
            self.history,
            options,
            rewriter=greedy_capped(llm, self.settings.llm.rewrite_max_new_tokens),
            yes_probability=yes_probability(llm),
            cache=cache,
        ).with_config(callbacks=[self._metrics_handler])
        self.chain_id, self.answer_mode = options.chain_id, options.mode
        self._metrics_handler.count_tokens = count_tokens
        self.llm, self.cache, self._chain = llm, cache, chain

    def _options(self, count_tokens: Callable[[str], int]) -> RagOptions:
        """The chain's options from settings; the fingerprint names what fixes a cached first turn."""
        retrieval, answer, glossary = self.settings.retrieval, self.settings.answer, self._glossary
        mode = answer_mode(self.settings, self._placement)
        chain_id = chain_fingerprint(
            retriever=type(self.retriever).__name__,
            glossary=glossary.digest if glossary else None,
            retrieval=retrieval.model_dump(mode="json"),
            answer={**answer.model_dump(mode="json"), "mode": mode},
            language=self.settings.language_default,
            document_tokens=self.settings.llm.prompt_document_tokens,
            rewrite_tokens=self.settings.llm.rewrite_max_new_tokens,
        )
        return RagOptions(
            default_language=self.settings.language_default,
            mode=mode,
            translate=retrieval.translate_queries,
            glossary=glossary,
            document_tokens=self.settings.llm.prompt_document_tokens,
            count_tokens=count_tokens,
            check_coverage=tuple(retrieval.coverage_check),
            coverage_question=retrieval.coverage_question,
            decline_below=dict(answer.decline_below),
            passage_chars=answer.passage_chars,
            passages=answer.passages,
            passage_language=answer.passage_language,
            judge_tokens=answer.judge_tokens,
            allow_instruction_like=self.settings.knowledge.allow_instruction_like,
            section_of=self.index.section if isinstance(self.retriever, ERPRetriever) else None,
            chain_id=chain_id,
            index_version=lambda: self.index.version,
        )

    def use_retriever(self, retriever: BaseRetriever) -> None:
        """Answer from ``retriever`` from now on (evaluation's oracle, a custom search)."""
        self.retriever = retriever
        self._install(self.llm, self.cache)

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_settings(cls, settings: Settings | None = None, **overrides: Any) -> ERPChatbot:
        """Build every part from settings (``Settings()`` reads ``ERP_`` variables)."""
        from erp_chatbot.devices import detect_gpus, plan_devices
        from erp_chatbot.knowledge.signing import signing_key
        from erp_chatbot.models.embeddings import load_embeddings
        from erp_chatbot.models.llm import build_llm, llm_path, model_version
        from erp_chatbot.runtime.cache import build_answer_cache

        settings = settings or Settings(**overrides)
        plan = plan_devices(settings, detect_gpus())
        embeddings = load_embeddings(settings, plan.embeddings_device)
        key = signing_key(settings) if index_store.exists(settings.index_dir) else None  # else: "no index" error
        index = index_store.load(settings.index_dir, embeddings, plan.faiss_gpu, key)
        model_dir = llm_path(settings)
        llm = build_llm(model_dir, settings.llm, plan.llm, settings.batching)
        version = model_version(model_dir, settings.llm, served=getattr(llm, "model_name", None))
        return cls(
            settings=settings,
            llm=llm,
            embeddings=embeddings,
            index=index,
            history=build_history(settings.memory),
            cache=build_answer_cache(settings, version),
            model_dir=model_dir,
            placement=plan.llm,
        )

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> ERPChatbot:
        """Build from a YAML settings file (``ERP_`` variables still win)."""
        return cls.from_settings(Settings.from_yaml(path, **overrides))

    # ------------------------------------------------------------------ answering

    @staticmethod
    def new_session_id() -> str:
        return uuid.uuid4().hex

    # ``roles``: the caller's roles; only documents they may read are retrieved
    # (``access.default_roles`` when None).

    def ask(self, question: str, session_id: str | None = None, roles: Sequence[str] | None = None) -> Answer:
        """The complete answer (streamed inside, so ``timings`` holds the time to its first token)."""
        session_id = self._session(session_id)
        timer = AnswerAssembler()
        for chunk in self.current_chain().stream(self._input(question), self._config(session_id, roles)):
            timer.add(chunk)
        return timer.answer(session_id)

    async def aask(self, question: str, session_id: str | None = None, roles: Sequence[str] | None = None) -> Answer:
        session_id = self._session(session_id)
        timer = AnswerAssembler()
        async for chunk in self.current_chain().astream(self._input(question), self._config(session_id, roles)):
            timer.add(chunk)
        return timer.answer(session_id)

    def stream(self, question: str, session_id: str | None = None, roles: Sequence[str] | None = None) -> Iterator[str]:
        """Answer text as it is generated (the turn is stored once the stream ends)."""
        for chunk in self.stream_output(question, session_id, roles):
            if chunk.get("answer"):
                yield chunk["answer"]

    def stream_output(
        self, question: str, session_id: str | None = None, roles: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """The chain's output as it streams (``ChainOutput``'s fields in parts): the sources first,
        then the answer text piece by piece, the grounding last."""
        yield from self.current_chain().stream(self._input(question), self._config(self._session(session_id), roles))

    async def astream(
        self, question: str, session_id: str | None = None, roles: Sequence[str] | None = None
    ) -> AsyncIterator[str]:
        config = self._config(self._session(session_id), roles)
        async for chunk in self.current_chain().astream(self._input(question), config):
            if chunk.get("answer"):
                yield chunk["answer"]

    def batch(
        self,
        questions: Sequence[str],
        session_ids: Sequence[str] | None = None,
        roles: Sequence[str] | None = None,
    ) -> list[Answer]:
        """Answer many questions; each gets its own new session unless ids are given."""
        ids = [self._session(s) for s in session_ids] if session_ids else [self.new_session_id() for _ in questions]
        if len(ids) != len(questions):
            raise ValueError(f"got {len(questions)} questions but {len(ids)} session ids")
        start = time.perf_counter()
        outputs = self.current_chain().batch([self._input(q) for q in questions], [self._config(s, roles) for s in ids])
        elapsed = time.perf_counter() - start
        return [answer_from_output(output, sid, elapsed) for output, sid in zip(outputs, ids, strict=True)]

    def as_runnable(self) -> Runnable:
        """The chain for LCEL and LangServe: input ``Question``, session (and roles) in the config."""
        live = RunnableLambda(lambda _: self.current_chain(), name="erp_chatbot")
        question = question_type(self.settings.server.max_question_chars)
        return _SessionBound(bound=live.with_types(input_type=question, output_type=ChainOutput))

    def as_chat_runnable(self) -> Runnable:
        """The chain for chat UIs: ``{"messages": [...]}`` in (the last one the question), the
        answer as Markdown text out with its sources after it (``chains.chat``); session and roles
        in the config, as for ``as_runnable``."""
        conversation = conversation_type(self.settings.server.max_question_chars)
        return _SessionBound(bound=chat_runnable(self.current_chain, conversation))

    # ------------------------------------------------------------------ model versions

    def reload_model(self, model_dir: Path) -> None:
        """Load ``model_dir`` and switch new requests to it once it is loaded."""
        from erp_chatbot.models.llm import build_llm, model_version
        from erp_chatbot.runtime.cache import AnswerCache

        placement = self._placement or CPU_PLACEMENT
        llm = build_llm(model_dir, self.settings.llm, placement, self.settings.batching)
        cache = AnswerCache(self.cache.backend, model_version(model_dir, self.settings.llm)) if self.cache else None
        self._install(llm, cache)
        self.model_dir = model_dir
        logger.warning("now answering with the model in %s", model_dir)

    @property
    def model_version(self) -> str | None:
        """The serving model's folder name (a registry version id when it comes from the registry),
        or the served model's name for the openai backend."""
        return self.model_dir.name if self.model_dir else getattr(self.llm, "model_name", None)

    def current_chain(self) -> Runnable:
        """The chain new requests run. Also notices (cheaply) whether the registry's active version
        moved, and then starts loading it (``RegistryFollower``)."""
        if self.settings.llm.model_path is None and self.settings.llm.backend == "transformers":
            self._follower.poll(self.model_dir)  # registry versions are HF folders
        return self._chain

    def health(self) -> dict[str, Any]:
        manifest = self.index.manifest
        return {
            "model": getattr(self.llm, "model_id", None) or type(self.llm).__name__,
            "model_version": self.model_version,
            "index": {
                "path": str(self.index.path),
                "documents": manifest.document_count,
                "chunks": manifest.chunk_count,
                "embedding_model": manifest.embedding_model,
            },
            "memory": history_state(self.history),
            "cache": self.cache.stats.as_dict() if self.cache else None,
        }

    # ------------------------------------------------------------------ helpers

    def _session(self, session_id: str | None) -> str:
        if session_id is None:
            return self.new_session_id()
        return validate_session_id(session_id, self.settings.memory.session_id_max_length)

    def _config(self, session_id: str, roles: Sequence[str] | None) -> RunnableConfig:
        if isinstance(roles, str):
            raise TypeError(f"roles must be a list of role names, e.g. [{roles!r}], not a string")
        roles = self.settings.access.default_roles if roles is None else roles
        return {"configurable": {"session_id": session_id, "roles": list(roles)}}

    def _input(self, question: str) -> dict[str, str]:
        return {"question": check_question(question, self.settings.server.max_question_chars)}


def answer_mode(settings: Settings, placement: LLMPlacement | None) -> AnswerMode:
    """``answer.mode``, with ``auto`` resolved: generation where the model is capable and fast (an
    inference server, a GPU), the documents' own words on a CPU (bench/README.md)."""
    mode = settings.answer.mode
    if mode != "auto":
        return mode
    on_gpu = placement is not None and placement.on_gpu
    return "generate" if settings.llm.backend == "openai" or on_gpu else "extract"


def _token_counter(llm: BaseLanguageModel) -> Callable[[str], int]:
    """Counts tokens with the model's own tokenizer (words, for models without one)."""
    from erp_chatbot.models.llama_cpp import LlamaCppChat

    if isinstance(llm, LlamaCppChat):
        return llm.get_num_tokens
    tokenizer = getattr(llm, "tokenizer", None) or getattr(getattr(llm, "pipeline", None), "tokenizer", None)
    if tokenizer is None:
        return lambda text: len(text.split())
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
