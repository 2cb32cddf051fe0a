"""``erp-chatbot keys``: API keys for the server, stored hashed in ``access.api_keys_file``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from erp_chatbot.cli.options import ConfigOption, JsonOption, comma_list, load_settings

if TYPE_CHECKING:
    from erp_chatbot.server.auth import APIKeys

app = typer.Typer(help="API keys for the server: add, list, revoke (stored hashed in access.api_keys_file).")


def _keys(config: Path | None) -> APIKeys:
    from erp_chatbot.server.auth import APIKeys

    settings = load_settings(config, demo=False)
    if settings.access.api_keys_file is None:
        raise typer.BadParameter("set access.api_keys_file (ERP_ACCESS__API_KEYS_FILE) to the keys file to use")
    return APIKeys(settings.access.api_keys_file)


@app.command("add")
def add(
    user: Annotated[str, typer.Option(help="who the key is for")],
    roles: Annotated[str, typer.Option(help="comma-separated roles, e.g. finance,hr")] = "",
    config: ConfigOption = None,
) -> None:
    """Create a key for USER; it is printed once and only its hash is stored."""
    typer.echo(_keys(config).add(user, comma_list(roles) or []))


@app.command("list")
def list_users(config: ConfigOption = None, as_json: JsonOption = False) -> None:
    """The users that hold keys, with their roles."""
    users = [{"user": i.user, "roles": list(i.roles)} for i in _keys(config).users()]
    if as_json:
        typer.echo(json.dumps(users, ensure_ascii=False))
        return
    for entry in users:
        typer.echo(f"{entry['user']}: {', '.join(entry['roles']) or '(public documents only)'}")


@app.command("revoke")
def revoke(user: Annotated[str, typer.Option(help="whose keys to remove")], config: ConfigOption = None) -> None:
    """Remove every key of USER."""
    typer.echo(f"{_keys(config).revoke(user)} key(s) removed")
