"""What every command shares: the consoles, quiet output (other programs' logs go to
`<data dir>/logs/<command>.log` unless `--verbose`), the one-line failure, the set-up, the option
types."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleOptions
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from pipelines.runtime import configure
from pipelines.settings import get_settings
from ragline.quiet import LibraryOutput

# Not a terminal (a pipe, CI): plain lines that the reader wraps, not rich's 80-column breaks.
out = Console(soft_wrap=not sys.stdout.isatty())
err = Console(stderr=True)

Collection = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="show Prefect's, Ray's and MLflow's logs too")]


class _Quiet:
    """The redirection of the running command, if it is quiet."""

    output: LibraryOutput | None = None
    start = 0  # the log's size when the command began: a hint names it only if it has news


def log_file() -> Path | None:
    """Where other programs' output goes while this command is quiet (None: verbose, or not yet)."""
    return _Quiet.output.log if _Quiet.output else None


def _logs_hint() -> str:
    log = log_file()
    grew = log is not None and log.exists() and log.stat().st_size > _Quiet.start
    return f" (logs: {log})" if grew else ""


def reason(exc: BaseException) -> str:
    """An exception as the one line a person reads."""
    return (str(exc) or type(exc).__name__).splitlines()[0]


def fail(message: str, code: int = 1) -> None:
    hint = _logs_hint() if code == 1 else ""  # a usage error (2) is not in any log
    err.print(f"[bold red]error:[/] {message}{hint}", soft_wrap=True)  # one line, whatever the width
    raise typer.Exit(code)


def quiet(settings: Any, verbose: bool) -> None:
    """Unless VERBOSE, send other programs' output to `<data dir>/logs/<command>.log` until the
    command ends (`finish`)."""
    if verbose or _Quiet.output is not None:
        return
    name = next((a for a in sys.argv[1:] if not a.startswith("-")), "ragline")  # the command
    log = settings.root / "logs" / f"{name}.log"
    _Quiet.start = log.stat().st_size if log.exists() else 0
    _Quiet.output = LibraryOutput(log, out, err).__enter__()


def stop_prefect_server() -> None:
    """Stop Prefect's temporary server if this process started one: now, into the log when quiet,
    rather than at exit, where its "Stopping temporary server" line reached the terminal."""
    server = sys.modules.get("prefect.server.api.server")
    if server is not None and server.SubprocessASGIServer._instances:
        from prefect._internal.concurrency.services import QueueService

        QueueService.drain_all(timeout=15)  # the log and event workers send what they hold first
        for instance in list(server.SubprocessASGIServer._instances.values()):
            instance.stop()


def finish(failure: BaseException | None = None) -> None:
    """End of the command: a failure nobody caught goes to the log as a traceback and to the
    terminal as one line; the terminal gets its descriptors back."""
    output, _Quiet.output = _Quiet.output, None
    if output is None:
        return
    with contextlib.suppress(Exception):
        stop_prefect_server()
    if failure is not None:
        with output.log.open("a") as f:
            traceback.print_exception(failure, file=f)
    output.close()
    if failure is not None:
        err.print(f"[bold red]error:[/] {reason(failure)} (logs: {output.log})", soft_wrap=True)


def emit_json(result: Any) -> None:
    """One JSON object on stdout (the terminal's, also while quiet)."""
    out.file.write(json.dumps(result, default=str) + "\n")
    out.file.flush()


def logs_line(to_stderr: bool = False) -> None:
    """The one line that names the log, at the end of a quiet command."""
    log = log_file()
    if log:
        (err if to_stderr else out).print(
            f"[dim]the logs of Prefect, Ray and MLflow: {log}[/]", highlight=False, soft_wrap=True
        )


class _Progress(logging.Handler):
    """Prefect's flow and task log lines ("embedded 512 / 890 chunks") as the status line's text."""

    def __init__(self, update: Any, doing: str) -> None:
        super().__init__(logging.INFO)
        self.update, self.doing = update, doing

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.update(f"{self.doing}: {record.getMessage()[:100]}")


class Status:
    """A spinner and one line of text, redrawn in place on a terminal (nothing on a pipe). Unlike
    rich's `console.status`, it leaves sys.stdout and sys.stderr alone: rich's Live swaps them for
    proxies that print above the spinner, so a logger made meanwhile (Ray's, when `ray.init` runs
    under a spinner) wrote to the terminal instead of the log, on a terminal only. The line is cut
    with an ellipsis at the terminal's width: a wrapped one left its tail behind."""

    def __init__(self, text: str) -> None:
        self.spinner = Spinner("dots", style="status.spinner")
        self.text = Text.from_markup(text)
        self.live = Live(self, console=out, transient=True, redirect_stdout=False, redirect_stderr=False)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> Iterator[Text]:
        line = Text.assemble(self.spinner.render(console.get_time()), " ", self.text)
        line.truncate(options.max_width, overflow="ellipsis")
        yield line

    def update(self, text: str) -> None:
        self.text = Text.from_markup(text)

    def __enter__(self) -> Status:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()


@contextlib.contextmanager
def working(doing: str) -> Iterator[None]:
    """A status line while a flow runs (on a terminal), showing its latest progress line."""
    loggers = [logging.getLogger(n) for n in ("prefect.flow_runs", "prefect.task_runs")]
    with Status(doing) as status:
        handler = _Progress(status.update, doing)
        for logger in loggers:
            logger.addHandler(handler)
        try:
            yield
        finally:
            for logger in loggers:
                logger.removeHandler(handler)


def setup(verbose: bool) -> Any:
    """Settings, and the environment for Prefect, MLflow and Ray; quiet unless VERBOSE. While
    `ragline up` runs on this data dir, flow runs go to its Prefect server; otherwise Prefect's
    temporary server keeps them in the same database under the data dir, which `ragline up` opens
    later: one history."""
    settings = get_settings()
    quiet(settings, verbose)
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
        with working(f"{flow.name} flow running"):
            return flow(*args)
    except Exception as exc:
        fail(f"{flow.name} failed: {reason(exc)}")
        raise  # unreachable: _fail exits


def print_result(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        emit_json(result)
        logs_line(to_stderr=True)  # stdout stays one JSON object
        return
    table = Table(title=title, show_header=False)
    for k, v in result.items():
        table.add_row(k, json.dumps(v, default=str) if isinstance(v, dict | list) else str(v))
    out.print(table)
    logs_line()


Port = Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default from settings)")]
