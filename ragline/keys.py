"""`ragline keys`: API keys of the Serve app (checked when RAGLINE_AUTH=true)."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipelines.settings import get_settings

keys_app = typer.Typer(
    no_args_is_help=True,
    help="API keys for the Serve app (RAGLINE_AUTH=true): one tenant and its collections per key.",
)
out = Console()
err = Console(stderr=True)

AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _store():  # type: ignore[no-untyped-def]
    from serving.keys import KeyStore

    return KeyStore(get_settings().sessions_database)


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)


@keys_app.command("create")
def create(
    tenant: Annotated[str, typer.Option("--tenant", "-t", help="who the key belongs to")],
    collection: Annotated[
        list[str], typer.Option("--collection", "-c", help="a collection it may read, or '*' (repeatable)")
    ],
    rate_limit: Annotated[
        str | None, typer.Option("--rate-limit", help="e.g. 60/min, 2/s, 1000/h; none = unlimited")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Create a key. The key itself is printed once, here: only its hash is stored."""
    from serving.keys import parse_rate

    try:
        rate = parse_rate(rate_limit) if rate_limit else None
        key, secret = _store().create(tenant, collection, rate)
    except ValueError as exc:
        _fail(str(exc), 2)
        return
    if as_json:
        print(json.dumps({**key.to_dict(), "key": secret}))
        return
    out.print(f"[green]created[/] key {key.id} for tenant {key.tenant}: {', '.join(key.collections)}")
    out.print(f"rate limit: {key.to_dict()['rate_limit']}")
    out.print(f"\n  {secret}\n")
    out.print("[yellow]Store it now: it is not shown again.[/] Clients send 'Authorization: Bearer <key>'.")


@keys_app.command("list")
def list_keys(as_json: AsJson = False) -> None:
    """Every key with its tenant, collections, limit, state and usage (requests and tokens)."""
    keys = [k.to_dict() for k in _store().list()]
    if as_json:
        print(json.dumps({"keys": keys}))
        return
    table = Table(title="API keys")
    table.add_column("id", no_wrap=True)
    for column in ("tenant", "collections", "limit", "state", "requests", "tokens in/out"):
        table.add_column(column, overflow="fold")
    for k in keys:
        state = f"revoked {k['revoked_at'][:10]}" if k["revoked_at"] else "active"
        table.add_row(
            k["id"],
            k["tenant"],
            ", ".join(k["collections"]),
            k["rate_limit"],
            state,
            str(k["requests"]),
            f"{k['prompt_tokens']}/{k['completion_tokens']}",
        )
    out.print(table)


@keys_app.command("revoke")
def revoke(key_id: Annotated[str, typer.Argument(help="the key's id (see `ragline keys list`)")]) -> None:
    """Revoke a key: the next request with it gets 401."""
    from serving.keys import UnknownKeyError

    try:
        key = _store().revoke(key_id)
    except (UnknownKeyError, ValueError) as exc:
        _fail(str(exc), 1)
        return
    out.print(f"revoked key {key.id} of tenant {key.tenant}")
