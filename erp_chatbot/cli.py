"""The ``erp-chatbot`` command: ingest documents, ask a question, serve the app."""

from __future__ import annotations

import json
import logging
import time
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from erp_chatbot.memory.history import redis_reachable
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
    if demo and settings.memory.redis_url and not redis_reachable(settings.memory):
        typer.echo(
            f"Redis is not answering at {settings.memory.redis_location}: the demo keeps history in memory", err=True
        )
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
        "instruction_like": report.instruction_like,
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
    roles: Annotated[
        str | None, typer.Option(help="comma-separated roles to answer as (default: access.default_roles)")
    ] = None,
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
    answer = ERPChatbot.from_settings(settings).ask(question, session_id=session, roles=_split(roles))
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
    server = settings.server.model_copy(update={"host": bind_host, "port": bind_port})
    settings = settings.model_copy(update={"server": server})
    typer.echo(
        f"loading models; the playground will be at http://{bind_host}:{bind_port}{settings.server.path}/playground/"
    )
    uvicorn.run(create_app(settings=settings), host=bind_host, port=bind_port)


keys_app = typer.Typer(help="API keys for the server: add, list, revoke (stored hashed in access.api_keys_file).")
app.add_typer(keys_app, name="keys")


def _keys(config: Path | None):
    from erp_chatbot.server.auth import APIKeys

    settings = load_settings(config, demo=False)
    if settings.access.api_keys_file is None:
        raise typer.BadParameter("set access.api_keys_file (ERP_ACCESS__API_KEYS_FILE) to the keys file to use")
    return APIKeys(settings.access.api_keys_file)


@keys_app.command("add")
def keys_add(
    user: Annotated[str, typer.Option(help="who the key is for")],
    roles: Annotated[str, typer.Option(help="comma-separated roles, e.g. finance,hr")] = "",
    config: ConfigOption = None,
) -> None:
    """Create a key for USER; it is printed once and only its hash is stored."""
    typer.echo(_keys(config).add(user, _split(roles) or []))


@keys_app.command("list")
def keys_list(config: ConfigOption = None, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The users that hold keys, with their roles."""
    users = [{"user": i.user, "roles": list(i.roles)} for i in _keys(config).users()]
    if as_json:
        typer.echo(json.dumps(users, ensure_ascii=False))
    for entry in [] if as_json else users:
        typer.echo(f"{entry['user']}: {', '.join(entry['roles']) or '(public documents only)'}")


@keys_app.command("revoke")
def keys_revoke(user: Annotated[str, typer.Option(help="whose keys to remove")], config: ConfigOption = None) -> None:
    """Remove every key of USER."""
    typer.echo(f"{_keys(config).revoke(user)} key(s) removed")


def _split(roles: str | None) -> list[str] | None:
    return None if roles is None else [r.strip() for r in roles.split(",") if r.strip()]


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


models_app = typer.Typer(help="Model versions: list, import, activate, roll back, back up, restore, prune.")
app.add_typer(models_app, name="models")


def _registry(config: Path | None):
    from erp_chatbot.models.registry import ModelRegistry

    settings = load_settings(config, demo=False)
    return ModelRegistry(settings.registry_dir, settings.backup_dir, settings.model_versions)


def _echo_state(registry, as_json: bool) -> None:
    from dataclasses import asdict

    state = registry.state()
    if as_json:
        typer.echo(json.dumps(asdict(state), indent=2, default=str))
        return
    for version in sorted(state.versions.values(), key=lambda v: v.created_at):
        mark = "active" if version.id == state.active else "previous" if version.id == state.previous else ""
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(version.created_at))
        typer.echo(f"{version.id:6} {mark:9} {created}  {version.kind:5} {version.source}  {version.note}")


JsonOption = Annotated[bool, typer.Option("--json", help="machine-readable output")]


@models_app.command("list")
def models_list(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the versions; the active and previous ones are marked."""
    _echo_state(_registry(config), as_json)


@models_app.command("import")
def models_import(
    source: Annotated[Path | None, typer.Argument(help="HF model folder or .gguf file")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="the bundled demo GGUF (llm.demo_model)")] = False,
    note: Annotated[str, typer.Option(help="what this version is")] = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a version (not activated, unless it is the first)."""
    import tempfile
    from dataclasses import asdict

    from erp_chatbot.models.demo import DEMO_LLMS, assemble_gguf

    registry = _registry(config)
    if source is None and not demo:
        raise typer.BadParameter("give a model folder or .gguf file, or --demo")
    gguf = demo or source.suffix == ".gguf"
    what = "the demo GGUF" if demo else str(source)
    step = "joining and converting it into an HF folder, about a minute" if gguf else "copying and checksumming"
    typer.echo(f"importing {what} ({step})...", err=True)
    if demo:
        name = load_settings(config, demo=False).llm.demo_model
        with tempfile.TemporaryDirectory() as tmp:
            version = registry.import_gguf(assemble_gguf(DEMO_LLMS[name], Path(tmp) / "demo.gguf"), note or name)
    elif gguf:
        version = registry.import_gguf(source, note)
    else:
        version = registry.import_folder(source, note=note)
    if as_json:
        typer.echo(json.dumps(asdict(version), indent=2, default=str))
        return
    typer.echo(f"imported {version.id} from {what}")


@models_app.command("activate")
def models_activate(version: str, config: ConfigOption = None) -> None:
    """Make VERSION the active model."""
    typer.echo(f"active: {_registry(config).activate(version).active}")


@models_app.command("rollback")
def models_rollback(config: ConfigOption = None) -> None:
    """Switch back to the previous version."""
    typer.echo(f"active: {_registry(config).rollback().active}")


@models_app.command("backup")
def models_backup(version: str, config: ConfigOption = None) -> None:
    """Copy VERSION to the backup folder (verified by checksum)."""
    typer.echo(f"backed up to {_registry(config).backup(version)}")


@models_app.command("restore")
def models_restore(version: str, config: ConfigOption = None) -> None:
    """Bring a backup back as a version; a corrupted backup is refused."""
    typer.echo(f"restored {_registry(config).restore(version).id}")


@models_app.command("prune")
def models_prune(config: ConfigOption = None) -> None:
    """Remove the oldest versions beyond model_versions.max_versions."""
    removed = _registry(config).prune()
    typer.echo(f"removed: {', '.join(removed) or 'nothing'}")


@app.command()
def train(
    data: Annotated[Path, typer.Option("--data", help="JSONL of question/answer pairs")],
    note: Annotated[str, typer.Option(help="what this version is")] = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Fine-tune the active model with LoRA and register the result (not activated)."""
    from dataclasses import asdict

    from erp_chatbot.training.lora import run_training

    _setup_logging(verbose)
    typer.echo("training (evaluating before and after on a held-out split)...", err=True)
    report = run_training(load_settings(config, demo=False), data, note)
    if as_json:
        typer.echo(json.dumps(asdict(report), indent=2))
        return
    typer.echo(
        f"registered {report.version} (inactive) from {report.base} on {report.device}: held-out loss "
        f"{report.before['loss']:.3f} -> {report.after['loss']:.3f}, token accuracy "
        f"{report.before['token_accuracy']:.2f} -> {report.after['token_accuracy']:.2f}; "
        f"activate with: erp-chatbot models activate {report.version}"
    )


@app.command("settings")
def show_settings(
    markdown: Annotated[bool, typer.Option("--markdown", help="the README's table")] = False,
    as_json: JsonOption = False,
) -> None:
    """Every setting with its default and meaning (YAML keys; ERP_A__B variables for a.b)."""
    from erp_chatbot.settings import reference, reference_markdown

    if markdown:
        typer.echo(reference_markdown())
    elif as_json:
        typer.echo(json.dumps(reference(), indent=2))
    else:
        for row in reference():
            typer.echo(f"{row['setting']:<42} {row['default']:<28} {row['meaning']}")


eval_app = typer.Typer(
    help="Evaluate retrieval (BEIR sets) and whole answers (JSONL); scores are recorded for /metrics."
)
app.add_typer(eval_app, name="eval")


@eval_app.command("retrieval")
def eval_retrieval(
    dataset: Annotated[Path, typer.Option("--dataset", help="BEIR folder: corpus.jsonl, queries.jsonl, qrels/")],
    modes: Annotated[str, typer.Option(help="comma-separated: dense, sparse, hybrid")] = "dense,sparse,hybrid",
    config: ConfigOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """nDCG@10, recall@5, MRR@10 (ranx) and latency per query of the retriever in each mode.

    The corpus is indexed in memory (one chunk per document) with the configured embedding model;
    fusion settings come from the retrieval settings. Each mode's nDCG@10 is recorded for /metrics.
    """
    from erp_chatbot.devices import detect_gpus, plan_devices
    from erp_chatbot.evaluation import MODES, evaluate_retrieval, index_corpus, load_beir, record_score
    from erp_chatbot.models.embeddings import load_embeddings

    _setup_logging(verbose)
    chosen = _split(modes) or []
    if not chosen or set(chosen) - set(MODES):
        raise typer.BadParameter(f"--modes takes a comma-separated list of {', '.join(MODES)}; got {modes!r}")
    settings = load_settings(config, demo=False)
    data = load_beir(dataset)
    embeddings = load_embeddings(settings, plan_devices(settings, detect_gpus()).embeddings_device)
    if not as_json:
        typer.echo(f"indexing {len(data.corpus)} documents...", err=True)
    index = index_corpus(embeddings, data, settings.embeddings.batch_size)
    reports = evaluate_retrieval(index, embeddings, data, settings.retrieval, chosen)
    for report in reports:
        record_score(
            settings.evaluations_file,
            f"retrieval-ndcg10:{dataset.resolve().name}:{report.mode}",
            report.scores["ndcg@10"],
        )
    if as_json:
        summary = {"dataset": str(dataset), "queries": len(data.queries), "documents": len(data.corpus)}
        typer.echo(json.dumps({**summary, "modes": [r.as_dict() for r in reports]}, indent=2))
        return
    typer.echo(f"{'mode':<8} {'nDCG@10':>8} {'recall@5':>8} {'MRR@10':>8} {'p50 ms':>8} {'p95 ms':>8}")
    for r in reports:
        metrics = " ".join(f"{r.scores[name]:>8.3f}" for name in ("ndcg@10", "recall@5", "mrr@10"))
        typer.echo(f"{r.mode:<8} {metrics} {r.p50_ms:>8.1f} {r.p95_ms:>8.1f}")
    typer.echo(f"{len(data.queries)} queries over {len(data.corpus)} documents")


@eval_app.command("answers")
def eval_answers(
    dataset: Annotated[Path, typer.Option("--dataset", help="JSONL: question, gold, facts, answerable, language")],
    config: ConfigOption = None,
    demo: DemoOption = False,
    roles: Annotated[str | None, typer.Option(help="comma-separated roles to answer as")] = None,
    oracle: Annotated[
        bool, typer.Option(help="answer from the 3 chunks of the gold pages closest to each question")
    ] = False,
    split: Annotated[str | None, typer.Option(help="only the questions of this split (dev or test)")] = None,
    temperature: Annotated[float, typer.Option(help="decoding temperature (0 = greedy, reproducible)")] = 0.0,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Run the whole chain on each question, in a new session, without the response cache:
    expected facts found, gold pages cited, answer language, declines, grounding, seconds; per language.
    """
    from tqdm.auto import tqdm

    from erp_chatbot.chatbot import ERPChatbot
    from erp_chatbot.evaluation import OracleRetriever, evaluate_answers, load_answer_cases, record_score

    _setup_logging(verbose)
    cases = load_answer_cases(dataset, split)
    settings = load_settings(config, demo)
    settings = settings.model_copy(
        update={
            "llm": settings.llm.model_copy(update={"temperature": temperature}),
            "cache": settings.cache.model_copy(update={"enabled": False}),
        }
    )
    _ensure_demo_index(settings, demo)
    bot = ERPChatbot.from_settings(settings)
    if oracle:
        gold = {case.question: case.gold for case in cases}
        bot.use_retriever(OracleRetriever(index=bot.index, embeddings=bot.embeddings, gold=gold))
    progress = tqdm(total=len(cases), desc="answering", unit="question", disable=as_json)

    def ask(question: str):
        answer = bot.ask(question, roles=_split(roles))
        progress.update()
        return answer

    report = evaluate_answers(ask, cases)
    progress.close()
    name = f"answers-facts:{dataset.stem}{f':{split}' if split else ''}{':oracle' if oracle else ''}"
    if report["facts_found"] is not None:
        record_score(settings.evaluations_file, name, report["facts_found"])
    if as_json:
        output = {"dataset": str(dataset), "split": split, "oracle": oracle, **report}
        typer.echo(json.dumps(output, indent=2, ensure_ascii=False))
        return
    columns = {"all": report, **report["by_language"]}
    typer.echo(f"{'':<26}" + "".join(f"{column:>8}" for column in columns))
    for metric in ANSWER_METRICS:
        typer.echo(f"{metric:<26}" + "".join(f"{_cell(summary[metric]):>8}" for summary in columns.values()))


ANSWER_METRICS = (
    "facts_found",
    "facts_half",
    "gold_cited",
    "in_language",
    "lead_in_language",
    "answerable_not_declined",
    "unanswerable_declined",
    "grounded",
    "nothing_invented",
    "p50_seconds",
    "p50_first_token_seconds",
)


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _ensure_demo_index(settings: Settings, demo: bool) -> None:
    """With --demo, index the bundled sample knowledge (a no-op when it is up to date)."""
    if demo:
        _run_ingest(settings, sample_knowledge_dir(), settings.index_dir, progress=False)


def _run_ingest(settings: Settings, folder: Path, index_dir: Path, progress: bool):
    from erp_chatbot.knowledge.ingest import ingest_with_settings

    if not folder.is_dir():
        raise typer.BadParameter(f"{folder} is not a folder; pass the folder that holds the documents")
    return ingest_with_settings(settings, folder, index_dir, progress=progress)


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
