"""What every command shares: the consoles, the one-line failure, the set-up, the option types."""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.runtime import configure
from pipelines.settings import get_settings

# Not a terminal (a pipe, CI): plain lines that the reader wraps, not rich's 80-column breaks.
out = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True)

Collection = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one line, whatever the terminal width
    raise typer.Exit(code)


def setup() -> Any:
    """Settings, and the environment for Prefect, MLflow and Ray. While `ragline up` runs on this
    data dir, flow runs go to its Prefect server; otherwise Prefect's temporary server keeps them
    in the same database under the data dir, which `ragline up` opens later: one history."""
    settings = get_settings()
    if not os.environ.get("PREFECT_API_URL"):
        from deployments.state import stack_prefect_api

        api = stack_prefect_api(settings)
        if api:
            os.environ["PREFECT_API_URL"] = api
    configure(settings)
    if settings.lancedb_uri and "://" in settings.lancedb_uri:
        from pipelines.store import Store, StoreUnavailableError

        try:  # object storage: a missing bucket or bad credentials is one line, before any flow
            Store.from_settings(settings)
        except StoreUnavailableError as exc:
            fail(str(exc))
    return settings


def run_flow(flow: Any, *args: Any) -> dict[str, Any]:
    """Run FLOW; when it fails, Prefect has logged the traceback: end with the one-line reason."""
    try:
        return flow(*args)
    except Exception as exc:
        fail(f"{flow.name} failed: {(str(exc) or type(exc).__name__).splitlines()[0]}")
        raise  # unreachable: _fail exits


def print_result(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    table = Table(title=title, show_header=False)
    for k, v in result.items():
        table.add_row(k, json.dumps(v, default=str) if isinstance(v, dict | list) else str(v))
    out.print(table)


Port = Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default from settings)")]
