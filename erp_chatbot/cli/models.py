"""Models: ``quantize``, ``train`` and ``erp-chatbot models`` (versions in the registry)."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from erp_chatbot.cli.options import ConfigOption, JsonOption, VerboseOption, load_settings, setup_logging

if TYPE_CHECKING:
    from erp_chatbot.models.registry import ModelRegistry

app = typer.Typer(help="Model versions: list, import, activate, roll back, back up, restore, prune.")


def quantize(
    source: Annotated[Path, typer.Argument(help="HF model folder to quantize")],
    target: Annotated[Path, typer.Argument(help="new folder for the 8-bit model")],
    device: Annotated[str, typer.Option(help="cpu (dynamic int8) or gpu (bitsandbytes int8)")] = "cpu",
    verbose: VerboseOption = False,
) -> None:
    """Write an 8-bit copy of a model; point llm.model_path at it to serve it."""
    from erp_chatbot.models.quantize import ModelQuantizer

    setup_logging(verbose)
    if device not in ("cpu", "gpu"):
        raise typer.BadParameter("--device must be cpu or gpu")
    typer.echo(f"quantized model written to {ModelQuantizer().quantize(source, target, device)}")


def train(
    data: Annotated[Path, typer.Option("--data", help="JSONL of question/answer pairs")],
    note: Annotated[str, typer.Option(help="what this version is")] = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Fine-tune the active model with LoRA and register the result (not activated)."""
    from erp_chatbot.training.lora import run_training

    setup_logging(verbose)
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


def _registry(config: Path | None) -> ModelRegistry:
    from erp_chatbot.models.registry import ModelRegistry

    settings = load_settings(config, demo=False)
    return ModelRegistry(settings.registry_dir, settings.backup_dir, settings.model_versions)


@app.command("list")
def list_versions(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """List the versions; the active and previous ones are marked."""
    state = _registry(config).state()
    if as_json:
        typer.echo(json.dumps(asdict(state), indent=2, default=str))
        return
    for version in sorted(state.versions.values(), key=lambda v: v.created_at):
        mark = "active" if version.id == state.active else "previous" if version.id == state.previous else ""
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(version.created_at))
        typer.echo(f"{version.id:6} {mark:9} {created}  {version.kind:5} {version.source}  {version.note}")


@app.command("import")
def import_version(
    source: Annotated[Path | None, typer.Argument(help="HF model folder or .gguf file")] = None,
    demo: Annotated[bool, typer.Option("--demo", help="the bundled demo GGUF (llm.demo_model)")] = False,
    note: Annotated[str, typer.Option(help="what this version is")] = "",
    config: ConfigOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add a version (not activated, unless it is the first)."""
    from erp_chatbot.models.demo import demo_llm_path

    registry = _registry(config)
    if source is None and not demo:
        raise typer.BadParameter("give a model folder or .gguf file, or --demo")
    gguf = not demo and source.suffix == ".gguf"
    what = "the demo LLM" if demo else str(source)
    step = "converting it into an HF folder, about a minute" if gguf else "copying and checksumming"
    if demo:
        step = "converted once into the models folder, about a minute the first time, then " + step
    typer.echo(f"importing {what} ({step})...", err=True)
    if demo:
        settings = load_settings(config, demo=False)
        prepared = demo_llm_path(settings.models_dir, settings.llm.demo_model)  # shared with the server's demo
        version = registry.import_folder(prepared, kind="gguf", note=note or settings.llm.demo_model)
    elif gguf:
        version = registry.import_gguf(source, note)
    else:
        version = registry.import_folder(source, note=note)
    if as_json:
        typer.echo(json.dumps(asdict(version), indent=2, default=str))
        return
    typer.echo(f"imported {version.id} from {what}")


@app.command("activate")
def activate(version: str, config: ConfigOption = None) -> None:
    """Make VERSION the active model."""
    typer.echo(f"active: {_registry(config).activate(version).active}")


@app.command("rollback")
def rollback(config: ConfigOption = None) -> None:
    """Switch back to the previous version."""
    typer.echo(f"active: {_registry(config).rollback().active}")


@app.command("backup")
def backup(version: str, config: ConfigOption = None) -> None:
    """Copy VERSION to the backup folder (verified by checksum)."""
    typer.echo(f"backed up to {_registry(config).backup(version)}")


@app.command("restore")
def restore(version: str, config: ConfigOption = None) -> None:
    """Bring a backup back as a version; a corrupted backup is refused."""
    typer.echo(f"restored {_registry(config).restore(version).id}")


@app.command("prune")
def prune(config: ConfigOption = None) -> None:
    """Remove the oldest versions beyond model_versions.max_versions."""
    removed = _registry(config).prune()
    typer.echo(f"removed: {', '.join(removed) or 'nothing'}")
