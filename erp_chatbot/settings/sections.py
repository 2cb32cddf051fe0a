"""The settings' sections: one per component (``llm``, ``retrieval``, ``memory``, ...); ``Settings``
(``erp_chatbot.settings``) gathers them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator


class Section(BaseModel):
    """A settings section: unknown keys are errors, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid")


class Slot(Section):
    """Where one workload runs: its GPUs and its memory limits."""

    gpu_ids: list[int] = Field(default_factory=list, description="GPUs it runs on")
    gpu_memory_fraction: float = Field(0.9, gt=0, le=1, description="share of each GPU it may fill")
    memory_gib: int = Field(32, gt=0, description="host memory limit of its container")


class ResourceSettings(Section):
    """The design's layout: LLM on GPUs 0-1; vector search and training share GPU 2."""

    llm: Slot = Slot(gpu_ids=[0, 1], memory_gib=64)
    vector_search: Slot = Slot(gpu_ids=[2], memory_gib=32)
    training: Slot = Slot(gpu_ids=[2], memory_gib=32)
    redis_maxmemory_gib: int = Field(16, description="Redis maxmemory (deployment; the cache evicts allkeys-lru)")


class LLMSettings(Section):
    backend: Literal["transformers", "llama-cpp", "openai"] = Field(
        "transformers",
        description="transformers: HuggingFacePipeline (GPUs, 8-bit); llama-cpp: a GGUF file through llama.cpp; "
        "openai: an OpenAI-compatible inference server (vLLM, TGI, llama.cpp server) at llm.base_url",
    )
    base_url: str | None = Field(
        None, description="openai backend: the server's API root, e.g. http://llm-server:8000/v1"
    )
    served_model: str | None = Field(
        None, description="openai backend: the model name the server serves; unset = the first it lists"
    )
    api_key: SecretStr | None = Field(None, description="openai backend: bearer key, if the server wants one")
    request_timeout_seconds: float = Field(120.0, gt=0, description="openai backend: longest wait for one reply")
    model_path: Path | None = Field(
        None, description="local HF folder (transformers) or .gguf file (llama-cpp); unset = bundled demo model"
    )
    demo_model: Literal["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"] = Field(
        "qwen2.5-coder-0.5b", description="bundled model used when model_path is unset"
    )
    context_tokens: int = Field(4096, gt=0, description="llama-cpp context window (prompt + answer)")
    prompt_batch_tokens: int = Field(
        128,
        gt=0,
        description="llama-cpp: prompt tokens evaluated per step (as fast as 512 on a CPU, with a quarter of "
        "the logits buffer: 78 MB for Qwen at 128)",
    )
    prompt_cache_mb: int = Field(
        512,
        ge=0,
        description="llama-cpp: RAM for saved prompt states (~25 MB each for the 1.5B Qwen's answer prompts), "
        "so shared prompt prefixes are evaluated once",
    )
    prompt_document_tokens: int | None = Field(
        None, gt=0, description="most tokens of retrieved text in a prompt, best chunks first; unset = all k chunks"
    )
    temperature: float = Field(0.7, ge=0, description="sampling temperature; 0 = greedy")
    max_new_tokens: int = Field(2048, gt=0, description="answer length cap in tokens")
    rewrite_max_new_tokens: int = Field(64, gt=0, description="cap for condensing follow-ups")
    top_p: float = Field(0.9, gt=0, le=1, description="nucleus sampling")
    repetition_penalty: float = Field(1.05, gt=0, description="above 1 also discourages copying context")
    load_in_8bit: bool = Field(True, description="bitsandbytes int8 on GPU (ignored on CPU and by llama-cpp)")
    cpu_quantization: Literal["none", "dynamic-int8"] = Field(
        "none", description="on CPU: dynamic int8 Linear layers (faster decoding)"
    )
    cpu_threads: int | None = Field(
        None,
        gt=0,
        description="CPU threads for generation; unset = the cores the process may use (llama-cpp), torch's "
        "default (transformers)",
    )

    @model_validator(mode="after")
    def _server_for_openai(self) -> LLMSettings:
        if self.backend == "openai" and not self.base_url:
            raise ValueError(
                "llm.backend is openai: set llm.base_url to the server's API root, e.g. http://host:8000/v1"
            )
        return self


class EmbeddingSettings(Section):
    model_path: Path | None = Field(None, description="local sentence-transformers folder; unset = demo")
    query_prefix: str = Field("query: ", description="prefix of queries (e5's prompt)")
    passage_prefix: str = Field("passage: ", description="prefix of indexed passages (e5's prompt)")
    batch_size: int = Field(
        32, gt=0, description="texts per encoder call: ingestion, and queries of concurrent retrievals"
    )


class KnowledgeSettings(Section):
    index_dir: Path | None = Field(None, description="FAISS index folder; unset = <home>/index")
    chunk_size: int = Field(800, gt=50, description="characters per chunk")
    chunk_overlap: int = Field(100, ge=0, description="characters shared by neighbouring chunks")
    signing_key: SecretStr | None = Field(
        None,
        description="HMAC key signing index manifests (unsigned ones are refused before unpickling); unset = a key "
        "made by the first ingest in <home>/index-signing.key (0600)",
    )

    allow_instruction_like: bool = Field(
        False,
        description='let passages that speak to the assistant ("ignore previous instructions...", found at '
        "ingestion) reach answers; off = they are kept out",
    )

    @property
    def signing_secret(self) -> str | None:
        return self.signing_key.get_secret_value() if self.signing_key else None

    @model_validator(mode="after")
    def _overlap_below_size(self) -> KnowledgeSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("knowledge.chunk_overlap must be smaller than knowledge.chunk_size")
        return self


class RetrievalSettings(Section):
    k: int = Field(5, gt=0, description="chunks retrieved")
    score_threshold: float = Field(0.7, ge=-1, le=1, description="minimum cosine similarity")
    query_cache_size: int = Field(1024, ge=0, description="recent query embeddings kept in memory")
    mode: Literal["hybrid", "dense", "sparse"] = Field("hybrid", description="FAISS and BM25 fused, or one alone")
    fusion: Literal["zscore", "rrf"] = Field("zscore", description="how hybrid rankings are combined")
    dense_weight: float = Field(1.0, ge=0, description="weight of the FAISS side in fusion")
    sparse_weight: float = Field(1.0, ge=0, description="weight of the BM25 side in fusion")
    candidates: int = Field(20, gt=0, description="chunks each side proposes before fusion")
    chunks_per_source: int | None = Field(
        None, gt=0, description="most chunks of one page among the k (more pages found); unset = no limit"
    )
    rrf_k: int = Field(60, gt=0, description="reciprocal rank fusion constant")
    reranker_path: Path | None = Field(
        None, description="local sentence-transformers CrossEncoder folder; set = rerank the fused candidates"
    )
    translate_queries: bool = Field(
        False, description="also search Korean questions translated into English by the LLM; one more LLM call"
    )
    translation_glossary: str = Field(
        "builtin",
        description="Korean ERP terms the translator is given the manual's words for (TSV lines: Korean term, "
        "English term): builtin = the bundled glossary, none = off, or a TSV file's path",
    )
    coverage_check: list[Literal["ko", "en"]] = Field(
        [],
        description="questions in these languages are first put to the LLM: do the retrieved chunks answer "
        "it? no = the documents-do-not-cover answer (a few tokens with llama.cpp, a prefill elsewhere)",
    )
    coverage_question: Literal["documents", "manual"] = Field(
        "documents",
        description="what the coverage check asks (manual needs coverage_check): do the documents answer it; "
        "manual = for knowledge that is a software manual only, also no to a company's own people, figures or "
        "policies and general knowledge",
    )

    @model_validator(mode="after")
    def _question_needs_a_check(self) -> RetrievalSettings:
        if self.coverage_question != "documents" and not self.coverage_check:
            raise ValueError(
                f"retrieval.coverage_question: {self.coverage_question} changes the coverage check, which is off; "
                "set retrieval.coverage_check too (e.g. [ko])"
            )
        return self


class AnswerSettings(Section):
    """How an answer is made from the retrieved sections, and when the documents are taken to be silent."""

    mode: Literal["generate", "extract", "auto"] = Field(
        "generate",
        description="generate: the LLM writes the answer from the best sections, checked line by line (from a "
        "line naming what no section holds, the user gets the section itself); extract: the best section in the "
        "documents' own words under a one-sentence lead in the question's language, no generation; auto: "
        "generate with the openai backend or on a GPU, extract on a CPU",
    )
    passage_chars: int = Field(
        1200, gt=100, description="about the most characters of sections an answer shows (whole paragraphs and lists)"
    )
    passages: int = Field(2, gt=0, description="sections an extracted answer shows, best first")
    passage_language: Literal["documents", "question"] = Field(
        "documents",
        description="extract mode: a section in another language than the question's is shown as written "
        "(documents) or translated by the LLM, names of menus, buttons and fields kept as written (question; "
        "a translated line naming what no section holds gives way to the section as written)",
    )
    judge_tokens: int = Field(
        150,
        gt=0,
        description="extract mode: tokens of the best section the coverage check reads (generate: the prompt's)",
    )
    decline_below: dict[Literal["en", "ko"], float] = Field(
        default_factory=dict,
        description="per language checked (retrieval.coverage_check): decline when the model's P(yes) that the "
        "sections answer the question is under this (choose it on an evaluation's dev split); unset = 0.5",
    )


class MemorySettings(Section):
    redis_url: str | None = Field("redis://127.0.0.1:6379/0", description="unset = in-process")
    key_prefix: str = Field("context:", description="Redis key prefix of a session history")
    owner_prefix: str = Field("session-owner:", description="Redis key prefix recording who owns a session")
    ttl_seconds: int = Field(1800, gt=0, description="sliding: refreshed on every read and write")
    window_turns: int = Field(10, gt=0, description="turns of history kept and used")
    socket_timeout_seconds: float = Field(2.0, gt=0, description="longest wait for Redis before going on without it")
    session_id_max_length: int = Field(128, gt=0, description="longest session id accepted")

    @property
    def redis_location(self) -> str | None:
        """``redis_url`` without its credentials, for messages and logs."""
        if not self.redis_url:
            return None
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(self.redis_url)
        if not (parts.username or parts.password):
            return self.redis_url
        return urlunsplit(parts._replace(netloc=f"***@{parts.netloc.rsplit('@', 1)[1]}"))


class CacheSettings(Section):
    """Response cache: in Redis when memory.redis_url is set, else in this process."""

    enabled: bool = Field(True, description="response cache on")
    max_entries: int = Field(10_000, gt=0, description="entries kept (least recently used evicted)")
    ttl_seconds: int = Field(3600, gt=0, description="seconds an answer stays cached")
    max_memory_mb: int = Field(256, gt=0, description="in-process bound; Redis uses its maxmemory")
    redis_prefix: str = Field("erp:answer:", description="Redis key prefix of cached answers")


class BatchingSettings(Section):
    """Request batching: concurrent generations share batched model calls."""

    enabled: bool = Field(True, description="gather concurrent generations into batched calls (transformers)")
    batch_size: int = Field(16, gt=0, description="prompts per model call")
    max_concurrency: int = Field(4, gt=0, description="batches in flight at once")
    max_wait_ms: int = Field(10, ge=0, description="a batch keeps filling while requests arrive less than this apart")


class ModelVersionSettings(Section):
    """Model versions and backups."""

    registry_dir: Path | None = Field(None, description="versions and registry.json; unset = <home>/registry")
    backup_dir: Path | None = Field(None, description="unset = <home>/backups")
    max_versions: int = Field(3, ge=2, description="kept; the active and the previous are never removed")
    keep_backups: int = Field(2, gt=0, description="backups kept")
    min_free_disk_gb: float = Field(500, ge=0, description="free space required before writing a version")


class TrainingSettings(Section):
    """LoRA fine-tuning on question/answer pairs (runs on resources.training)."""

    lora_r: int = Field(8, gt=0, description="LoRA rank")
    lora_alpha: int = Field(16, gt=0, description="LoRA alpha")
    lora_dropout: float = Field(0.05, ge=0, lt=1, description="LoRA dropout")
    learning_rate: float = Field(2e-4, gt=0, description="learning rate")
    epochs: int = Field(3, gt=0, description="training epochs")
    batch_size: int = Field(4, gt=0, description="examples per training step")
    eval_fraction: float = Field(0.2, gt=0, lt=1, description="held out for before/after evaluation")
    max_length: int = Field(1024, gt=0, description="tokens per example")
    seed: int = Field(0, description="random seed of the split and training")


class AccessSettings(Section):
    """Who may read what: documents carry ``roles``; callers carry roles too.

    A chunk without roles is public. A caller reads a chunk when they share one of its roles;
    the role ``*`` reads everything.
    """

    default_roles: list[str] = Field(
        default_factory=lambda: ["*"],
        description="roles of library callers that pass none, and of the keyless loopback server",
    )
    api_keys_file: Path | None = Field(
        None, description="hashed API keys (erp-chatbot keys add); set = every request needs a key"
    )


class ServerSettings(Section):
    host: str = Field("127.0.0.1", description="bind address")
    port: int = Field(8000, gt=0, lt=65536, description="port")
    path: str = Field("/erp", description="path of the chain (LangServe)")
    max_question_chars: int = Field(2000, gt=0, description="longer questions are refused with 422")
    max_body_bytes: int = Field(256 * 1024, gt=0, description="larger request bodies are refused with 413")
    max_batch_inputs: int = Field(16, gt=0, description="questions one <path>/batch request may hold (422 beyond)")
    rate_limit_per_minute: int | None = Field(
        600,
        gt=0,
        description="requests one caller (API key user) may make per minute, counted in Redis for all replicas "
        "(429 with Retry-After beyond); unset = no limit",
    )
    request_timeout_seconds: float = Field(
        300.0, gt=0, description="a request that has not started its response by then gets 504"
    )
    malloc_arenas: int | None = Field(
        2,
        gt=0,
        description="glibc malloc arenas of the server process: fewer = less memory under many clients; "
        "unset = glibc's default (8 per core)",
    )
    malloc_mmap_threshold_mb: int | None = Field(
        4,
        gt=0,
        le=32,
        description="glibc: blocks of at least this size get a mapping of their own, returned to the system when "
        "freed (saved prompt states); unset = glibc's sliding threshold, which keeps them in the heap",
    )
    cached_first_turns: bool = Field(
        True,
        description="answer cached first turns of <path>/invoke before LangServe runs the chain (no "
        "LangChain callbacks or tracing for them); false: every request runs the chain",
    )
