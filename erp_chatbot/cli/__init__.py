"""The ``erp-chatbot`` command, one module per command group:

- ``answering``: ingest, ask, chat, serve
- ``keys``: the server's API keys
- ``models``: quantize, train, model versions
- ``evaluate``: retrieval and answer evaluation
- ``configuration``: the settings reference
"""

from __future__ import annotations

import sys

import click
import typer

from erp_chatbot.cli import answering, configuration, evaluate, keys, models
from erp_chatbot.cli.options import load_settings, run_ingest, sample_knowledge_dir

__all__ = ["app", "load_settings", "main", "run_ingest", "sample_knowledge_dir"]

app = typer.Typer(help="Answers ERP questions from your own documents, in Korean and English.", no_args_is_help=True)
for command in (answering.ingest, answering.ask, answering.chat, answering.serve, models.quantize, models.train):
    app.command()(command)
app.command("settings")(configuration.show_settings)
app.add_typer(keys.app, name="keys")
app.add_typer(models.app, name="models")
app.add_typer(evaluate.app, name="eval")


def main() -> None:
    """Entry point: one clear line per error unless --verbose."""
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
