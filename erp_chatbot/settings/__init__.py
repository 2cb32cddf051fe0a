"""The one typed settings schema: every default of the design lives here.

Values come, in rising priority, from these defaults, a YAML file (``ERP_CONFIG`` or
``Settings.from_yaml``) and ``ERP_`` environment variables (``__`` separates nesting:
``ERP_LLM__TEMPERATURE=0.2``). Nothing else in the package reads the environment.
"""

from __future__ import annotations

import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from erp_chatbot.settings.sections import (
    AccessSettings,
    AnswerSettings,
    BatchingSettings,
    CacheSettings,
    EmbeddingSettings,
    KnowledgeSettings,
    LLMSettings,
    MemorySettings,
    ModelVersionSettings,
    ResourceSettings,
    RetrievalSettings,
    ServerSettings,
    TrainingSettings,
)

DEFAULT_HOME = Path("~/.cache/erp-chatbot")
_YAML_PATH: ContextVar[Path | None] = ContextVar("erp_settings_yaml", default=None)


class Settings(BaseSettings):
    """Everything the library can be told; docs/configuration.md is the generated reference."""

    model_config = SettingsConfigDict(env_prefix="ERP_", env_nested_delimiter="__", extra="forbid", yaml_file=None)

    home: Path = Field(DEFAULT_HOME, description="where demo models and the default index live")
    language_default: Literal["ko", "en"] = Field("ko", description="answer language when a question shows none")
    llm: LLMSettings = LLMSettings()
    embeddings: EmbeddingSettings = EmbeddingSettings()
    knowledge: KnowledgeSettings = KnowledgeSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    memory: MemorySettings = MemorySettings()
    resources: ResourceSettings = ResourceSettings()
    cache: CacheSettings = CacheSettings()
    batching: BatchingSettings = BatchingSettings()
    model_versions: ModelVersionSettings = ModelVersionSettings()
    training: TrainingSettings = TrainingSettings()
    access: AccessSettings = AccessSettings()
    server: ServerSettings = ServerSettings()

    @field_validator("home")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def evaluations_file(self) -> Path:
        """Latest evaluation scores (written by `erp-chatbot eval`, read by /metrics)."""
        return self.home / "evaluations.json"

    @property
    def evaluation_vectors_dir(self) -> Path:
        """Benchmark corpora's vectors, reused by `erp-chatbot eval retrieval` (knowledge.vector_cache)."""
        return self.home / "evaluation-vectors"

    @property
    def registry_dir(self) -> Path:
        return (self.model_versions.registry_dir or self.home / "registry").expanduser()

    @property
    def backup_dir(self) -> Path:
        return (self.model_versions.backup_dir or self.home / "backups").expanduser()

    @property
    def index_dir(self) -> Path:
        return (self.knowledge.index_dir or self.home / "index").expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_path = _YAML_PATH.get() or os.environ.get("ERP_CONFIG")
        if yaml_path:
            sources.append(_yaml_source(settings_cls, Path(yaml_path)))
        return tuple(sources)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> Settings:
        """Load a YAML file; ``ERP_`` variables and ``overrides`` still win over it."""
        token = _YAML_PATH.set(Path(path))
        try:
            return cls(**overrides)
        finally:
            _YAML_PATH.reset(token)


def _yaml_source(settings_cls: type[BaseSettings], path: Path) -> YamlConfigSettingsSource:
    if not path.is_file():
        raise FileNotFoundError(f"settings file {path} does not exist; check ERP_CONFIG or the path")
    return YamlConfigSettingsSource(settings_cls, yaml_file=path)


def reference() -> list[dict[str, str]]:
    """Every setting with its default and meaning, from the schema (README's table is this)."""
    rows: list[dict[str, str]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.")
                continue
            default = field.get_default(call_default_factory=True)
            shown = "unset" if default is None else str(default)
            rows.append({"setting": prefix + name, "default": shown, "meaning": field.description or ""})

    walk(Settings, "")
    return rows


def reference_markdown() -> str:
    lines = ["| setting | default | meaning |", "| --- | --- | --- |"]
    for row in reference():
        default = f"`{row['default']}`" if row["default"] not in ("unset", "") else row["default"] or "`''`"
        lines.append(f"| `{row['setting']}` | {default} | {row['meaning'].replace('|', '/')} |")
    return "\n".join(lines)
