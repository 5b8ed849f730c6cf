"""`ragline`: the command line of INTERFACE.md. Thin: each command calls a flow or the service.
The pipeline's commands are here; `service` has serve, chat, up and status; `demo` the demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ragline import demo, service
from ragline.console import (
    AsJson,
    Collection,
    Status,
    Verbose,
    fail,
    finish,
    log_file,
    logs_line,
    out,
    print_result,
    reason,
    run_flow,
    setup,
    working,
)
from ragline.feedback import feedback_app
from ragline.keys import keys_app

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    help="ragline: documents in, a chat service with sources out.",
)
app.add_typer(keys_app, name="keys")
app.add_typer(feedback_app, name="feedback")


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
    verbose: Verbose = False,
) -> None:
    """Validated ingestion + chunking as a Prefect flow run; bad inputs are quarantined, not lost."""
    setup(verbose)
    if format not in ("auto", "files", "jsonl", "beir"):
        fail(f"unknown --format {format!r}; use auto, files, jsonl or beir", 2)
    for s in sources:
        if not s.exists():
            fail(f"source {s} does not exist", 2)
    fields: dict[str, str] = {}
    for item in field or []:
        key, sep, value = item.partition("=")
        if not sep or key not in ("id", "title", "text") or not value:
            fail(f"--field {item!r}: use id=NAME, title=NAME or text=NAME", 2)
        fields[key] = value
    from flows.ingest import ingest_flow

    args = ([str(s) for s in sources], collection, format, include, exclude, fields, prune)
    result = run_flow(ingest_flow, *args)
    print_result(result, as_json, f"ingest {collection}")


@app.command()
def embed(
    collection: Collection = "sample",
    model: Annotated[str | None, typer.Option(help="local sentence-transformers folder")] = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Batch embedding on Ray into the collection's LanceDB index, then (re)builds its indexes."""
    setup(verbose)
    from flows.embed import embed_flow

    print_result(run_flow(embed_flow, collection, model), as_json, f"embed {collection}")


@app.command()
def refresh(
    sources: Annotated[list[Path], typer.Argument(help="folders or files")],
    collection: Collection = "sample",
    format: str = "auto",
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Ingest + embed as one flow run (what the schedule in prefect.yaml runs)."""
    setup(verbose)
    from flows.refresh import refresh_flow

    result = run_flow(refresh_flow, [str(s) for s in sources], collection, format)
    print_result(result, as_json, f"refresh {collection}")


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
    concurrency: Annotated[
        int, typer.Option(help="answers made at once by a batching engine (OpenVINO, vLLM, a server)")
    ] = 4,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Score the serving retriever (and generator) on an evaluation set; logs an MLflow run."""
    setup(verbose)
    if mode not in (None, "hybrid", "vector", "text"):
        fail(f"unknown --mode {mode!r}; use hybrid, vector or text", 2)
    if split not in ("all", "search", "holdout"):
        fail(f"unknown --split {split!r}; use all, search or holdout", 2)
    if concurrency < 1:
        fail(f"--concurrency must be at least 1, got {concurrency}", 2)
    if not dataset.is_dir():
        fail(f"evaluation set {dataset} is not a folder (BEIR layout: queries.jsonl, qrels/test.tsv)", 2)
    from flows.evaluate import evaluate_flow

    try:
        with working("evaluate flow running"):
            result = evaluate_flow(collection, str(dataset), mode, answers, max_answers, split, concurrency)  # type: ignore[arg-type]
    except (ValueError, LookupError) as exc:
        fail(str(exc))
        return
    print_result(result, as_json, f"evaluate {collection}")


def check_feedback(feedback: Path | None) -> None:
    if feedback is not None and not (feedback / "ratings.jsonl").is_file():
        fail(f"{feedback} is not a feedback export (no ratings.jsonl): see `ragline feedback export`", 2)


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
    rerank: Annotated[
        bool, typer.Option(help="learn a feature ranker for the winner (kept if it helps under CV)")
    ] = True,
    finetune_budget: Annotated[
        float | None, typer.Option(min=30, help="then fine-tune the embedder for this many seconds")
    ] = None,
    feedback: Annotated[
        Path | None,
        typer.Option(
            help="a `ragline feedback export` folder: its rated questions train the ranker (and fine-tuning)"
        ),
    ] = None,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Search RAG configs (each trial a nested MLflow run); promote the best to `champion` if it beats
    the current champion on the held-out split; the winner first gets the length prior and a feature
    ranker learned on the search split where they help (--no-rerank: no ranker). --finetune-budget:
    then fine-tune the embedder (`ragline finetune`), kept only if it beats that champion on the
    held-out split."""
    setup(verbose)
    from pipelines.evaluation.metrics import metric_names

    if metric not in metric_names():
        fail(f"unknown --metric {metric!r}; use one of {', '.join(metric_names())}", 2)
    if not dataset.is_dir():
        fail(f"evaluation set {dataset} is not a folder (BEIR layout: queries.jsonl, qrels/test.tsv)", 2)
    check_feedback(feedback)
    from flows.optimize import optimize_flow

    try:
        with working("optimize flow running"):
            args = (trials, metric, latency_budget_ms, chunking, answers)
            tune = {"finetune_budget_s": finetune_budget, "feedback": str(feedback) if feedback else None}
            tune |= {"rerank": rerank}
            result = optimize_flow(collection, str(dataset), *args, **tune)
    except (ValueError, LookupError, RuntimeError) as exc:
        fail(str(exc))
        return
    print_result(result, as_json, f"optimize {collection}")


@app.command()
def finetune(
    collection: Collection = "sample",
    dataset: Annotated[Path, typer.Option(help="BEIR-layout evaluation folder")] = Path(
        ".ragline/sample-corpus/eval"
    ),
    time_budget: Annotated[float, typer.Option(min=30, help="seconds the training job may take")] = 600.0,
    feedback: Annotated[
        Path | None, typer.Option(help="a `ragline feedback export` folder: its rated answers train too")
    ] = None,
    metric: Annotated[str, typer.Option(help="the held-out gate, e.g. ndcg@10")] = "ndcg@10",
    reranker: Annotated[
        bool, typer.Option(help="also train a cross-encoder reranker on the same pairs (its own budget)")
    ] = False,
    as_json: AsJson = False,
    verbose: Verbose = False,
) -> None:
    """Fine-tune the embedder on the collection (Ray Train), re-embed with it, with --reranker train
    a reranker too, and make the best part of the champion only if it beats the incumbent on the
    held-out split."""
    setup(verbose)
    from pipelines.evaluation.metrics import metric_names

    if metric not in metric_names():
        fail(f"unknown --metric {metric!r}; use one of {', '.join(metric_names())}", 2)
    if not dataset.is_dir():
        fail(f"evaluation set {dataset} is not a folder (BEIR layout: queries.jsonl, qrels/test.tsv)", 2)
    check_feedback(feedback)
    from flows.finetune import finetune_flow

    try:
        with working("finetune flow running"):
            result = finetune_flow(
                collection,
                str(dataset),
                time_budget,
                metric,
                feedback=str(feedback) if feedback else None,
                reranker=reranker,
            )
    except (ValueError, LookupError, RuntimeError) as exc:
        fail(str(exc))
        return
    print_result(result, as_json, f"finetune {collection}")


@app.command("eval-set")
def eval_set(
    dest: Annotated[Path, typer.Argument(help="folder to write the BEIR-layout starter set to")],
    collection: Collection = "sample",
    n: Annotated[int, typer.Option(help="questions to write")] = 50,
    verbose: Verbose = False,
) -> None:
    """Write a synthetic starter evaluation set from a collection's chunks (review it by hand)."""
    settings = setup(verbose)
    import polars as pl

    from pipelines.evaluation.evalsets import starter_set
    from pipelines.store import Store

    chunks = pl.from_arrow(Store.from_settings(settings).chunks(collection).to_arrow())
    assert isinstance(chunks, pl.DataFrame)
    if chunks.is_empty():
        fail(f"collection {collection!r} has no chunks (run `ragline ingest ... -c {collection}`)")
    path = starter_set(chunks, dest, n=n)
    out.print(f"[green]✓[/] wrote {path}/queries.jsonl and qrels/test.tsv (marked synthetic)")
    logs_line()


@app.command()
def prepare(verbose: Verbose = False) -> None:
    """One-time set-up of the data dir: convert the packaged generator model for the CPU engine
    (`make demo` runs it; cached, so a second run does nothing)."""
    settings = setup(verbose)
    import time

    from pipelines.generation.backends import prepare_generator

    began = time.perf_counter()
    with Status(f"converting the {settings.generator} generator's model (once)"):
        try:
            folders = prepare_generator(settings)
        except Exception as exc:
            fail(f"model conversion failed: {reason(exc)}")
            return
    for folder in folders:
        out.print(f"[green]✓[/] model ready: {folder}", highlight=False, soft_wrap=True)
    if not folders:
        out.print(f"[green]✓[/] nothing to convert for generator {settings.generator!r}")
    out.print(f"[dim]prepared in {time.perf_counter() - began:.1f} s[/]")
    logs_line()


# In the order of `ragline --help`: the pipeline above, then the service, the stack and the demo.
app.command()(service.up)
app.command()(service.status)
app.command()(service.serve)
app.command()(service.chat)
app.command()(demo.demo)


def main() -> None:
    failure: BaseException | None = None
    code: int | str | None = 0
    try:
        app()
    except KeyboardInterrupt:
        code = 130
    except SystemExit as exc:  # typer ends every command so
        code = exc.code
    except Exception as exc:  # nobody caught it: quiet, one line here and the traceback in the log
        failure, code = exc, 1
        if log_file() is None:
            raise  # verbose: the traceback on the terminal
    finally:
        finish(failure)
    sys.exit(code)


if __name__ == "__main__":
    main()
