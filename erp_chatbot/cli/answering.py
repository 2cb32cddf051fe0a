"""Asking and serving: ``ingest``, ``ask``, ``chat``, ``serve``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn

from erp_chatbot.cli.options import (
    ConfigOption,
    DemoOption,
    JsonOption,
    RolesOption,
    VerboseOption,
    comma_list,
    ensure_demo_index,
    load_settings,
    run_ingest,
    setup_logging,
)

if TYPE_CHECKING:
    from erp_chatbot.chatbot import ERPChatbot


def ingest(
    folder: Annotated[Path, typer.Argument(help="folder of Markdown, text, HTML and PDF files")],
    config: ConfigOption = None,
    index_dir: Annotated[Path | None, typer.Option(help="where the index goes")] = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Build or update the knowledge index from FOLDER (only changed files are re-embedded)."""
    setup_logging(verbose)
    settings = load_settings(config, demo=False)
    target = index_dir or settings.index_dir
    report = run_ingest(settings, folder, target, progress=not as_json)
    if as_json:
        summary = {
            "added": report.added,
            "updated": report.updated,
            "deleted": report.deleted,
            "unchanged": report.unchanged,
            "chunks_embedded": report.chunks_embedded,
            "chunks_total": report.chunks_total,
            "index": str(target),
            "instruction_like": report.instruction_like,
        }
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    typer.echo(
        f"{len(report.added)} added, {len(report.updated)} updated, {len(report.deleted)} deleted, "
        f"{report.unchanged} unchanged; {report.chunks_total} chunks in {target}"
    )


def ask(
    question: Annotated[str, typer.Argument(help="the question, in Korean or English")],
    session: Annotated[str | None, typer.Option(help="session id, to continue a conversation")] = None,
    roles: RolesOption = None,
    config: ConfigOption = None,
    demo: DemoOption = False,
    as_json: Annotated[bool, typer.Option("--json", help="the whole answer object as JSON, once complete")] = False,
    verbose: VerboseOption = False,
) -> None:
    """Answer one QUESTION from the knowledge index: the answer as it is written, then its sources."""
    bot = _chatbot(config, demo, verbose)
    if as_json:
        answer = bot.ask(question, session_id=session, roles=comma_list(roles))
        typer.echo(answer.model_dump_json(indent=2))
        return
    _print_streamed(bot, question, session or bot.new_session_id(), comma_list(roles))


def chat(
    session: Annotated[str | None, typer.Option(help="session id to continue (default: a new one)")] = None,
    roles: RolesOption = None,
    config: ConfigOption = None,
    demo: DemoOption = False,
    verbose: VerboseOption = False,
) -> None:
    """A conversation in one session: type a question, read the answer; follow-ups may say "그럼 …".
    An empty line, "exit" or Ctrl-D ends it."""
    bot = _chatbot(config, demo, verbose)
    session_id = session or bot.new_session_id()
    typer.echo(f"session {session_id}; an empty line or Ctrl-D ends the conversation", err=True)
    while True:
        try:
            question = input("> " if sys.stdin.isatty() else "").strip()
        except EOFError:
            break
        if question.lower() in ("", "exit", "quit"):
            break
        _print_streamed(bot, question, session_id, comma_list(roles))
        typer.echo()


def _chatbot(config: Path | None, demo: bool, verbose: bool) -> ERPChatbot:
    from erp_chatbot.chatbot import ERPChatbot

    setup_logging(verbose)
    settings = load_settings(config, demo)
    ensure_demo_index(settings, demo)
    return ERPChatbot.from_settings(settings)


def _print_streamed(bot: ERPChatbot, question: str, session_id: str, roles: list[str] | None) -> None:
    """The answer's text as it arrives, then each source; a grounding note stays in the text, where
    the chain puts it, so what is printed is what the chain answered."""
    sources: list[dict] = []
    for chunk in bot.stream_output(question, session_id=session_id, roles=roles):
        sources = chunk.get("sources", sources)
        if chunk.get("answer"):
            typer.echo(chunk["answer"], nl=False)
    typer.echo()
    for source in sources:
        typer.echo(f"  - {source['title']} ({source['source']}, {source['score']:.2f})")


def serve(
    config: ConfigOption = None,
    demo: DemoOption = False,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="port")] = None,
    verbose: VerboseOption = False,
) -> None:
    """Serve the chain over HTTP (LangServe), the chat view at /chat/ and the playground at /erp/playground/."""
    from erp_chatbot.server.app import create_app

    setup_logging(verbose)
    settings = load_settings(config, demo)
    if demo:
        typer.echo("indexing the bundled sample knowledge (skipped when it is up to date)...", err=True)
    ensure_demo_index(settings, demo)
    server = settings.server.model_copy(
        update={"host": host or settings.server.host, "port": port or settings.server.port}
    )
    settings = settings.model_copy(update={"server": server})
    typer.echo("loading the models (the demo's first start prepares them once, about a minute)...", err=True)
    url = f"http://{server.host}:{server.port}"
    ready = f"ready: chat at {url}/chat/ (prompt playground: {url}{server.path}/playground/)"
    level = "debug" if verbose else "warning"
    app = create_app(settings=settings)
    _AnnouncingServer(uvicorn.Config(app, server.host, server.port, log_level=level), ready).run()


class _AnnouncingServer(uvicorn.Server):
    """Says ``ready`` in one line once the port accepts requests (uvicorn itself logs at warning)."""

    def __init__(self, config: uvicorn.Config, ready: str) -> None:
        super().__init__(config)
        self.ready = ready

    async def startup(self, sockets: list | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            typer.echo(self.ready)
