"""The ``erp-chatbot`` command: ingest documents, ask a question, serve the app."""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from erp_chatbot.memory.history import redis_answers
from erp_chatbot.settings import Settings

app = typer.Typer(help="Answers ERP questions from your own documents, in Korean and English.", no_args_is_help=True)
ConfigOption = Annotated[Path | None, typer.Option("--config", "-c", help="YAML settings file")]
DemoOption = Annotated[bool, typer.Option("--demo", help="demo profile and the bundled sample knowledge")]
VerboseOption = Annotated[bool, typer.Option("--verbose", "-v", help="debug logging and full tracebacks")]


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
    if demo and settings.memory.redis_url and not redis_answers(settings.memory):
        typer.echo(f"Redis is not answering at {settings.memory.redis_url}: the demo keeps history in memory", err=True)
        settings = settings.model_copy(update={"memory": settings.memory.model_copy(update={"redis_url": None})})
    return settings


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(levelname)s %(message)s")


@app.command()
def ingest(
    folder: Annotated[Path, typer.Argument(help="folder of Markdown, text, HTML and PDF files")],
    config: ConfigOption = None,
    index_dir: Annotated[Path | None, typer.Option(help="where the index goes")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable report")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Build or update the knowledge index from FOLDER (only changed files are re-embedded)."""
    _setup_logging(verbose)
    settings = load_settings(config, demo=False)
    report = _run_ingest(settings, folder, index_dir or settings.index_dir, progress=not as_json)
    summary = {
        "added": report.added,
        "updated": report.updated,
        "deleted": report.deleted,
        "unchanged": report.unchanged,
        "chunks_embedded": report.chunks_embedded,
        "chunks_total": report.chunks_total,
        "index": str(index_dir or settings.index_dir),
    }
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
    else:
        typer.echo(
            f"{len(report.added)} added, {len(report.updated)} updated, {len(report.deleted)} deleted, "
            f"{report.unchanged} unchanged; {report.chunks_total} chunks in {summary['index']}"
        )


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question, in Korean or English")],
    session: Annotated[str | None, typer.Option(help="session id, to continue a conversation")] = None,
    config: ConfigOption = None,
    demo: DemoOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="the whole answer object as JSON")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Answer one QUESTION from the knowledge index."""
    from erp_chatbot.chatbot import ERPChatbot

    _setup_logging(verbose)
    settings = load_settings(config, demo)
    _ensure_demo_index(settings, demo)
    answer = ERPChatbot.from_settings(settings).ask(question, session_id=session)
    if as_json:
        typer.echo(answer.model_dump_json(indent=2))
        return
    typer.echo(answer.text)
    for source in answer.sources:
        typer.echo(f"  - {source.title} ({source.source}, {source.score:.2f})")


@app.command()
def serve(
    config: ConfigOption = None,
    demo: DemoOption = False,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve the chain over HTTP (LangServe) with its playground at /erp/playground/."""
    import uvicorn

    from erp_chatbot.server.app import create_app

    _setup_logging(verbose)
    settings = load_settings(config, demo)
    _ensure_demo_index(settings, demo)
    bind_host, bind_port = host or settings.server.host, port or settings.server.port
    typer.echo(
        f"loading models; the playground will be at http://{bind_host}:{bind_port}{settings.server.path}/playground/"
    )
    uvicorn.run(create_app(settings=settings), host=bind_host, port=bind_port)


@app.command()
def quantize(
    source: Annotated[Path, typer.Argument(help="HF model folder to quantize")],
    target: Annotated[Path, typer.Argument(help="new folder for the 8-bit model")],
    device: Annotated[str, typer.Option(help="cpu (dynamic int8) or gpu (bitsandbytes int8)")] = "cpu",
    verbose: VerboseOption = False,
) -> None:
    """Write an 8-bit copy of a model; point llm.model_path at it to serve it."""
    from erp_chatbot.models.quantize import ModelQuantizer

    _setup_logging(verbose)
    if device not in ("cpu", "gpu"):
        raise typer.BadParameter("--device must be cpu or gpu")
    typer.echo(f"quantized model written to {ModelQuantizer().quantize(source, target, device)}")


def _ensure_demo_index(settings: Settings, demo: bool) -> None:
    """With --demo, index the bundled sample knowledge (a no-op when it is up to date)."""
    if demo:
        _run_ingest(settings, sample_knowledge_dir(), settings.index_dir, progress=False)


def _run_ingest(settings: Settings, folder: Path, index_dir: Path, progress: bool):
    from erp_chatbot.devices import detect_gpus, plan_devices
    from erp_chatbot.knowledge.ingest import ingest as run
    from erp_chatbot.models.embeddings import embeddings_path, load_embeddings

    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder; pass the folder that holds the documents")
    device = plan_devices(settings, detect_gpus()).embeddings_device
    return run(
        folder,
        index_dir,
        load_embeddings(settings, device),
        embedding_model=embeddings_path(settings).name,
        chunk_size=settings.knowledge.chunk_size,
        chunk_overlap=settings.knowledge.chunk_overlap,
        batch_size=settings.embeddings.batch_size,
        progress=progress,
    )


def main() -> None:
    """Entry point: one clear line per error unless --verbose."""
    import sys

    import click

    try:
        app(standalone_mode=False)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except click.exceptions.Abort:
        sys.exit(1)
    except Exception as error:
        if "-v" in sys.argv or "--verbose" in sys.argv:
            raise
        typer.echo(f"error: {error}", err=True)
        sys.exit(1)
