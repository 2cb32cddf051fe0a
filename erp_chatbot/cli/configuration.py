"""``erp-chatbot settings``: every setting with its default and meaning."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from erp_chatbot.cli.options import JsonOption


def show_settings(
    markdown: Annotated[bool, typer.Option("--markdown", help="the table in docs/configuration.md")] = False,
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
