"""`ragline`: the command line of INTERFACE.md. Thin: each command calls a flow or the service."""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from pipelines.runtime import configure
from pipelines.settings import get_settings
from ragline.keys import keys_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="ragline: documents in, a chat service with sources out.",
)
app.add_typer(keys_app, name="keys")
out = Console()
err = Console(stderr=True)

Collection = Annotated[str, typer.Option("--collection", "-c", help="collection name")]
AsJson = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)  # one line, whatever the terminal width
    raise typer.Exit(code)


def _setup() -> Any:
    settings = get_settings()
    configure(settings)
    return settings


def _run_flow(flow: Any, *args: Any) -> dict[str, Any]:
    """Run FLOW; when it fails, Prefect has logged the traceback: end with the one-line reason."""
    try:
        return flow(*args)
    except Exception as exc:
        _fail(f"{flow.name} failed: {(str(exc) or type(exc).__name__).splitlines()[0]}")
        raise  # unreachable: _fail exits


def _print(result: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result, default=str))
        return
    table = Table(title=title, show_header=False)
    for k, v in result.items():
        table.add_row(k, json.dumps(v, default=str) if isinstance(v, dict | list) else str(v))
    out.print(table)


@app.command()
def ingest(
    sources: Annotated[list[Path], typer.Argument(help="folders or files (Markdown, HTML, text, JSONL)")],
    collection: Collection = "sample",
    format: Annotated[str, typer.Option(help="auto | files | jsonl | beir")] = "auto",
    include: Annotated[
        list[str] | None, typer.Option(help="glob of files to read in folders (repeatable)")
    ] = None,
    exclude: Annotated[
        list[str] | None, typer.Option(help="glob of files to skip in folders (repeatable)")
    ] = None,
    field: Annotated[
        list[str] | None, typer.Option(help="JSONL field name, e.g. text=body or id=uuid (repeatable)")
    ] = None,
    prune: Annotated[bool, typer.Option(help="delete documents that are gone from these sources")] = False,
    as_json: AsJson = False,
) -> None:
    """Validated ingestion + chunking as a Prefect flow run; bad inputs are quarantined, not lost."""
    _setup()
    if format not in ("auto", "files", "jsonl", "beir"):
        _fail(f"unknown --format {format!r}; use auto, files, jsonl or beir", 2)
    for s in sources:
        if not s.exists():
            _fail(f"source {s} does not exist", 2)
    fields: dict[str, str] = {}
    for item in field or []:
        key, sep, value = item.partition("=")
        if not sep or key not in ("id", "title", "text") or not value:
            _fail(f"--field {item!r}: use id=NAME, title=NAME or text=NAME", 2)
        fields[key] = value
    from flows.ingest import ingest_flow

    args = ([str(s) for s in sources], collection, format, include, exclude, fields, prune)
    result = _run_flow(ingest_flow, *args)
    _print(result, as_json, f"ingest {collection}")


@app.command()
def embed(
    collection: Collection = "sample",
    model: Annotated[str | None, typer.Option(help="local sentence-transformers folder")] = None,
    as_json: AsJson = False,
) -> None:
    """Batch embedding on Ray into the collection's LanceDB index, then (re)builds its indexes."""
    _setup()
    from flows.embed import embed_flow

    _print(_run_flow(embed_flow, collection, model), as_json, f"embed {collection}")


@app.command()
def refresh(
    sources: Annotated[list[Path], typer.Argument(help="folders or files")],
    collection: Collection = "sample",
    format: str = "auto",
    as_json: AsJson = False,
) -> None:
    """Ingest + embed as one flow run (what the schedule in prefect.yaml runs)."""
    _setup()
    from flows.refresh import refresh_flow

    result = _run_flow(refresh_flow, [str(s) for s in sources], collection, format)
    _print(result, as_json, f"refresh {collection}")


@app.command()
def evaluate(
    collection: Collection = "sample",
    dataset: Annotated[
        Path, typer.Option(help="BEIR-layout folder: queries.jsonl, qrels/test.tsv (+ corpus, answers)")
    ] = Path(".ragline/sample-corpus/eval"),
    mode: Annotated[str | None, typer.Option(help="hybrid | vector | text (default: as served)")] = None,
    answers: Annotated[bool, typer.Option(help="also generate answers and score them (slow on CPU)")] = False,
    max_answers: Annotated[int | None, typer.Option(help="answer at most this many queries")] = None,
    split: Annotated[str, typer.Option(help="all | search | holdout")] = "all",
    as_json: AsJson = False,
) -> None:
    """Score the serving retriever (and generator) on an evaluation set; logs an MLflow run."""
    _setup()
    if mode not in (None, "hybrid", "vector", "text"):
        _fail(f"unknown --mode {mode!r}; use hybrid, vector or text", 2)
    if split not in ("all", "search", "holdout"):
        _fail(f"unknown --split {split!r}; use all, search or holdout", 2)
    if not dataset.is_dir():
        _fail(f"evaluation set {dataset} is not a folder (BEIR layout: queries.jsonl, qrels/test.tsv)", 2)
    from flows.evaluate import evaluate_flow

    try:
        result = evaluate_flow(collection, str(dataset), mode, answers, max_answers, split)  # type: ignore[arg-type]
    except (ValueError, LookupError) as exc:
        _fail(str(exc))
        return
    _print(result, as_json, f"evaluate {collection}")


@app.command()
def optimize(
    collection: Collection = "sample",
    dataset: Annotated[Path, typer.Option(help="BEIR-layout evaluation folder")] = Path(
        ".ragline/sample-corpus/eval"
    ),
    trials: Annotated[int, typer.Option(min=1, max=500, help="Optuna trials")] = 20,
    metric: Annotated[str, typer.Option(help="objective, e.g. ndcg@10, recall@10, mrr@10")] = "ndcg@10",
    latency_budget_ms: Annotated[float, typer.Option(help="p95 retrieval latency budget")] = 250.0,
    chunking: Annotated[bool, typer.Option(help="also search chunk size/overlap (re-embeds)")] = True,
    answers: Annotated[bool, typer.Option(help="score generated answers too (slow on CPU)")] = False,
    as_json: AsJson = False,
) -> None:
    """Search RAG configs (each trial a nested MLflow run); promote the best to `champion` if it beats
    the current champion on the held-out split."""
    _setup()
    from pipelines.evaluation.metrics import metric_names

    if metric not in metric_names():
        _fail(f"unknown --metric {metric!r}; use one of {', '.join(metric_names())}", 2)
    if not dataset.is_dir():
        _fail(f"evaluation set {dataset} is not a folder (BEIR layout: queries.jsonl, qrels/test.tsv)", 2)
    from flows.optimize import optimize_flow

    try:
        result = optimize_flow(collection, str(dataset), trials, metric, latency_budget_ms, chunking, answers)
    except (ValueError, LookupError, RuntimeError) as exc:
        _fail(str(exc))
        return
    _print(result, as_json, f"optimize {collection}")


@app.command("eval-set")
def eval_set(
    dest: Annotated[Path, typer.Argument(help="folder to write the BEIR-layout starter set to")],
    collection: Collection = "sample",
    n: Annotated[int, typer.Option(help="questions to write")] = 50,
) -> None:
    """Write a synthetic starter evaluation set from a collection's chunks (review it by hand)."""
    settings = _setup()
    import polars as pl

    from pipelines.evaluation.evalsets import starter_set
    from pipelines.store import Store

    chunks = pl.from_arrow(Store(settings.lancedb_location).chunks(collection).to_arrow())
    assert isinstance(chunks, pl.DataFrame)
    if chunks.is_empty():
        _fail(f"collection {collection!r} has no chunks (run `ragline ingest ... -c {collection}`)")
    path = starter_set(chunks, dest, n=n)
    out.print(f"[green]✓[/] wrote {path}/queries.jsonl and qrels/test.tsv (marked synthetic)")


Port = Annotated[int | None, typer.Option(help="port on 127.0.0.1 (default from settings)")]


@app.command()
def up(
    prefect_port: Port = None,
    mlflow_port: Port = None,
    serve_port: Port = None,
    dashboard_port: Port = None,
    auth: Annotated[bool, typer.Option(help="API keys on the Serve app (`ragline keys`)")] = True,
    project_dir: Annotated[Path | None, typer.Option(help="folder of prefect.yaml and flows/")] = None,
    ray_cpus: Annotated[int | None, typer.Option(help="logical CPUs of the Ray head")] = None,
    timeout: Annotated[float, typer.Option(help="seconds each component may take to start")] = 300.0,
) -> None:
    """The whole local stack until Ctrl-C: Prefect server + worker with the deployments of
    prefect.yaml, MLflow UI, Ray (dashboard) and the Serve app. Logs: <data dir>/stack/logs."""
    settings = _setup()
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
        _fail(reason)


@app.command()
def status(as_json: AsJson = False) -> None:
    """What `ragline up` runs for this data dir: each component's URL, pid and health.
    Exit status 0 when everything is up and healthy, 1 otherwise."""
    from deployments.status import status as stack_status

    result = stack_status(get_settings())
    if as_json:
        print(json.dumps(result))
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


@app.command()
def serve(
    config: Annotated[
        Path | None, typer.Option(help="Serve config file, e.g. deployments/serve-local.yaml")
    ] = None,
) -> None:
    """Run the Ray Serve application (default http://127.0.0.1:8000) until stopped with Ctrl-C."""
    settings = _setup()
    from serving import runner
    from serving.config import load_serve_config

    overrides: dict[str, dict[str, Any]] = {}
    if config is not None:
        if not config.is_file():
            _fail(f"config file {config} does not exist", 2)
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
            _fail(str(exc), 2)
        overrides = cfg.deployments
    url = runner.start(settings, overrides)
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
        runner.stop()


@app.command()
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
        _fail(f"cannot reach {url}: {exc} (is `ragline serve` running?)")
        return
    body = r.json()
    if r.status_code != 200:
        _fail(f"{r.status_code} {body.get('error', {}).get('message', body)}")
    if as_json:
        print(json.dumps(body))
    else:
        show_answer(body)


def show_answer(body: dict[str, Any]) -> None:
    out.print(f"\n[bold]Answer[/]{' [yellow](degraded)[/]' if body.get('degraded') else ''}")
    out.print(body["answer"] or "(empty)")
    out.print("\n[bold]Sources[/]")
    for i, s in enumerate(body["sources"], start=1):
        out.print(f"  [{i}] {s['title']}  [dim]({s['doc_id']}, score {s['score']:.3f})[/]")
    t = body["timings"]
    out.print(
        f"\n[dim]{body['config_version']} · model {body['model']} · retrieval {t['retrieval_ms']} ms · "
        f"generation {t['generation_ms']} ms · {body['usage']['completion_tokens']} tokens[/]"
    )


@app.command()
def demo(
    question: Annotated[str | None, typer.Option(help="the question to ask at the end")] = None,
    collection: Collection = "sample",
) -> None:
    """The main job end to end on the bundled sample corpus: ingest → embed → evaluate → serve → ask."""
    settings = _setup()
    from pipelines.sample import DEMO_QUESTION, write_sample_corpus

    started = time.perf_counter()
    question = question or DEMO_QUESTION
    out.rule("[bold]ragline demo")
    out.print(f"data dir: {settings.root}")
    with out.status("[1/5] writing the sample corpus"):
        sources = write_sample_corpus(settings.root / "sample-corpus")
    out.print(f"[green]✓[/] [1/5] sample corpus: {', '.join(str(s) for s in sources)}")

    from flows.embed import embed_flow
    from flows.ingest import ingest_flow

    with out.status("[2/5] ingest flow: parse → data contract → chunks (Prefect)"):
        ing = ingest_flow([str(s) for s in sources], collection)
    out.print(
        f"[green]✓[/] [2/5] ingest: {ing['inputs']} inputs = {ing['documents']} new/changed + "
        f"{ing['unchanged']} unchanged + {ing['quarantined']} quarantined → {ing['chunks']} chunks"
    )
    with out.status("[3/5] embed flow: Ray Data actor pool → LanceDB (first run loads the model)"):
        emb = embed_flow(collection)
    out.print(
        f"[green]✓[/] [3/5] embed: {emb['embedded']} embedded, {emb['skipped']} already there "
        f"({emb['rows_per_s']} rows/s) → {emb['table']} v{emb['table_version']}"
    )
    from flows.evaluate import evaluate_flow

    with out.status("[4/5] evaluate flow: the hand-checked evaluation set → metrics → MLflow run"):
        ev = evaluate_flow(collection, str(settings.root / "sample-corpus" / "eval"))
    m = ev["metrics"]
    out.print(
        f"[green]✓[/] [4/5] evaluate: {ev['queries']} queries, nDCG@10 {m['ndcg@10']:.3f}, "
        f"recall@10 {m['recall@10']:.3f}, MRR@10 {m['mrr@10']:.3f} → MLflow run {ev['mlflow_run_id'][:8]}"
    )

    import httpx

    from serving import runner

    try:
        with out.status("[5/5] starting Ray Serve (query embedder, retriever, generator)"):
            url = runner.start(settings.model_copy(update={"serve_log_level": "WARNING"}))
        out.print(f"[green]✓[/] [5/5] serving at {url}")
        out.print(f"\n[bold]Question:[/] {question}")
        with out.status("generating the answer on CPU"):
            r = httpx.post(
                f"{url}/v1/chat", json={"message": question, "collection": collection}, timeout=300
            )
        if r.status_code != 200:
            _fail(f"chat failed: {r.status_code} {r.text}")
        show_answer(r.json())
    finally:
        with out.status("shutting down Serve and Ray"):
            runner.stop()
    out.rule(f"done in {time.perf_counter() - started:.0f} s")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
