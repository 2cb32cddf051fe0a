"""What every command shares: its options, the settings they load, logging, the demo's index."""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from erp_chatbot.memory.history import redis_reachable
from erp_chatbot.settings import Settings

ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file")]
DemoOption = Annotated[bool, typer.Option("--demo", help="demo profile and the bundled sample knowledge")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging and full tracebacks")]
JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]
RolesOption = Annotated[
    str | None, typer.Option(help="comma-separated roles to answer as (default: access.default_roles)")
]


def sample_knowledge_dir() -> Path:
    return Path(str(resources.files("erp_chatbot") / "sample_knowledge"))


def load_settings(config: Path | None, demo: bool) -> Settings:
    """Settings from --config (or the demo profile); --demo keeps its own index apart from yours."""
    if config is None and demo:
        config = Path(str(resources.files("erp_chatbot") / "profiles" / "demo.yaml"))
    settings = Settings.from_yaml(config) if config else Settings()
    if demo and settings.knowledge.index_dir is None:
        knowledge = settings.knowledge.model_copy(update={"index_dir": settings.home / "demo-index"})
        settings = settings.model_copy(update={"knowledge": knowledge})
    if demo and settings.memory.redis_url and not redis_reachable(settings.memory):
        typer.echo(
            f"Redis is not answering at {settings.memory.redis_location}: the demo keeps history in memory", err=True
        )
        settings = settings.model_copy(update={"memory": settings.memory.model_copy(update={"redis_url": None})})
    return settings


def setup_logging(verbose: bool) -> None:
    """Warnings only, unless --verbose. Nor do the models' sub-second loading steps draw progress
    bars (transformers' "Loading weights"); our own bars are for steps that take seconds."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")
    if not verbose:
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # read when transformers is imported


def comma_list(roles: str | None) -> list[str] | None:
    return None if roles is None else [r.strip() for r in roles.split(",") if r.strip()]


def ensure_demo_index(settings: Settings, demo: bool) -> None:
    """With --demo, index the bundled sample knowledge (a no-op when it is up to date)."""
    if demo:
        run_ingest(settings, sample_knowledge_dir(), settings.index_dir, progress=False)


def run_ingest(settings: Settings, folder: Path, index_dir: Path, progress: bool):
    from erp_chatbot.knowledge.ingest import ingest_with_settings

    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder; pass the folder that holds the documents")
    return ingest_with_settings(settings, folder, index_dir, progress=progress)
