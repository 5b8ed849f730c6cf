"""The commands of a running service: `serve`, `chat` (and the answer as a person reads it), and the
whole local stack, `up` and `status`."""

from __future__ import annotations

import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from pipelines.settings import get_settings
from ragline.console import AsJson, Port, Status, Verbose, emit_json, fail, logs_line, out, setup


def up(
    prefect_port: Port = None,
    mlflow_port: Port = None,
    serve_port: Port = None,
    dashboard_port: Port = None,
    auth: Annotated[bool, typer.Option(help="API keys on the Serve app (`ragline keys`)")] = True,
    project_dir: Annotated[Path | None, typer.Option(help="folder of prefect.yaml and flows/")] = None,
    ray_cpus: Annotated[int | None, typer.Option(help="logical CPUs of the Ray head")] = None,
    timeout: Annotated[float, typer.Option(help="seconds each component may take to start")] = 300.0,
    verbose: Verbose = False,
) -> None:
    """The whole local stack until Ctrl-C: Prefect server + worker with the deployments of
    prefect.yaml, MLflow UI, Ray (dashboard) and the Serve app. Logs: <data dir>/stack/logs."""
    settings = setup(verbose)
    from deployments.stack import StackConfig, run

    config = StackConfig.from_settings(
        settings,
        prefect_port=prefect_port,
        mlflow_port=mlflow_port,
        serve_port=serve_port,
        dashboard_port=dashboard_port,
        auth=auth,
        project_dir=project_dir.resolve() if project_dir else None,
        ray_cpus=ray_cpus,
        start_timeout_s=timeout,
    )

    def ready(stack: Any) -> None:
        table = Table(title=f"ragline up · {settings.root}", show_header=True)
        for col in ("component", "url", "pid"):
            table.add_column(col)
        for c in stack.state.components:
            table.add_row(c.name, c.url, str(c.pid))
        out.print(table)
        keys = "on (`ragline keys create`)" if auth else "off"
        out.print(f"API docs {stack.urls['serve']}/docs · API keys {keys}")
        out.print(f"Ray dashboard token: `ray get-auth-token` · logs: {stack.logs} · Ctrl-C to stop")

    reason = run(settings, config, out.print, ready)
    if reason:
        fail(reason)
    logs_line()


def status(as_json: AsJson = False) -> None:
    """What `ragline up` runs for this data dir: each component's URL, pid and health.
    Exit status 0 when everything is up and healthy, 1 otherwise."""
    from deployments.status import status as stack_status

    result = stack_status(get_settings())
    if as_json:
        emit_json(result)
    elif not result["running"] and not result["components"]:
        out.print(f"`ragline up` is not running for {result['data_dir']}")
    else:
        table = Table(title=f"ragline up · {result['phase']} · pid {result['pid']}")
        for col in ("component", "url", "pid", "health"):
            table.add_column(col)
        for c in result["components"]:
            health = (
                "[green]healthy[/]" if c["healthy"] else "[yellow]up[/]" if c["alive"] else "[red]down[/]"
            )
            table.add_row(c["name"], c["url"], str(c["pid"]), health)
        out.print(table)
    raise typer.Exit(0 if result["healthy"] else 1)


def serve(
    config: Annotated[
        Path | None, typer.Option(help="Serve config file, e.g. deployments/serve-local.yaml")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Run the Ray Serve application (default http://127.0.0.1:8000) until stopped with Ctrl-C."""
    settings = setup(verbose)
    from serving import runner
    from serving.config import load_serve_config

    overrides: dict[str, dict[str, Any]] = {}
    if config is not None:
        if not config.is_file():
            fail(f"config file {config} does not exist", 2)
        try:
            cfg = load_serve_config(config)
            settings = settings.model_validate(
                {
                    **settings.model_dump(),
                    **cfg.args,
                    **{k: v for k, v in (("host", cfg.host), ("port", cfg.port)) if v},
                }
            )
        except ValueError as exc:
            fail(str(exc), 2)
        overrides = cfg.deployments
    with ExitStack() as started:
        if settings.generator == "vllm-cpu" and not settings.openai_base_url:
            from deployments.processes import StartError
            from deployments.vllm_cpu import served

            try:
                with Status("starting vLLM's CPU server (~1-3 min; its log: <data dir>/vllm)"):
                    settings = started.enter_context(served(settings))
            except StartError as exc:
                fail(str(exc))
            out.print(f"vLLM's CPU server generates at {settings.openai_base_url}")
        try:
            with Status("starting Ray Serve"):
                url = runner.start(settings, overrides)
        except runner.PortInUseError as exc:
            fail(str(exc))
        started.callback(runner.stop)
        out.print(f"[green]serving[/] {url}  (docs: {url}/docs)  Ctrl-C to stop")
        stopping = {"now": False}

        def _stop(*_: Any) -> None:
            stopping["now"] = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            while not stopping["now"]:
                time.sleep(0.5)
        finally:
            out.print("stopping…")
    logs_line()


def chat(
    question: Annotated[str, typer.Argument(help="the question")],
    collection: Annotated[str | None, typer.Option("--collection", "-c")] = None,
    url: Annotated[str, typer.Option(help="service URL")] = "http://127.0.0.1:8000",
    as_json: AsJson = False,
) -> None:
    """Ask the running service; prints the answer and its numbered sources."""
    import httpx

    try:
        r = httpx.post(f"{url}/v1/chat", json={"message": question, "collection": collection}, timeout=300)
    except httpx.HTTPError as exc:
        fail(f"cannot reach {url}: {exc} (is `ragline serve` running?)")
        return
    body = r.json()
    if r.status_code != 200:
        fail(f"{r.status_code} {body.get('error', {}).get('message', body)}")
    if as_json:
        emit_json(body)
    else:
        show_answer(body)


def show_answer(body: dict[str, Any]) -> None:
    note = " [yellow](degraded)[/]" if body.get("degraded") else ""
    note += (
        " [yellow](refused: the sources do not say; the model was not asked)[/]"
        if body.get("refused")
        else ""
    )
    out.print(f"\n[bold]Answer[/]{note}")
    out.print(body["answer"] or "(empty)", markup=False, highlight=False)
    statuses = [c["status"] for c in body.get("citations", [])]
    if statuses:

        def count(kinds: tuple[str, ...]) -> str:
            return ", ".join(f"{statuses.count(k)} {k}" for k in kinds if k in statuses)

        from pipelines.generation.citations import DROPPED

        kept, dropped = count(("checked", "repaired", "quoted")), count(DROPPED)
        grounded = "every sentence cites a supporting source" if body.get("grounded") else "not grounded"
        dropped = f"; sentences dropped: {dropped}" if dropped else ""
        out.print(f"[dim]citations: {kept or 'none'} ({grounded}){dropped}[/]")
    out.print("\n[bold]Sources[/]")
    for i, s in enumerate(body["sources"], start=1):
        out.print(f"  [{i}] {s['title']}  [dim]({s['doc_id']}, score {s['score']:.3f})[/]")
    t = body["timings"]
    out.print(
        f"\n[dim]{body['config_version']} · model {body['model']} · retrieval {t['retrieval_ms']} ms · "
        f"generation {t['generation_ms']} ms · {body['usage']['completion_tokens']} tokens[/]"
    )
