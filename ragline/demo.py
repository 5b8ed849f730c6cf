"""`ragline demo`: the main job end to end on the bundled sample corpus, as a person meets it: one
line per stage, the answer with its sources, where the runs are recorded and what to do next.
Other programs' output goes to `<data dir>/logs/demo.log` (`--verbose` shows it)."""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from ragline.console import (
    Collection,
    Status,
    Verbose,
    fail,
    log_file,
    logs_line,
    out,
    reason,
    setup,
    stop_prefect_server,
    working,
)
from ragline.service import show_answer


class Stages:
    """Times each stage; prints its result line with the time it took."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done: list[tuple[str, float]] = []

    @contextlib.contextmanager
    def stage(self, name: str, doing: str) -> Iterator[None]:
        began = time.perf_counter()
        with working(f"[{len(self.done) + 1}/{self.total}] {doing}"):
            yield
        self.done.append((name, time.perf_counter() - began))

    def ok(self, text: str) -> None:
        n, seconds = len(self.done), self.done[-1][1]
        line = f"[green]✓[/] [{n}/{self.total}] {text} [dim]({seconds:.1f} s)[/]"
        out.print(line, highlight=False, soft_wrap=True)  # a pipe or CI log wraps it itself

    def summary(self) -> str:
        return " · ".join(f"{name} {seconds:.0f} s" for name, seconds in self.done)


def demo(
    question: Annotated[str | None, typer.Option(help="the question to ask at the end")] = None,
    collection: Collection = "sample",
    serve: Annotated[bool, typer.Option("--serve", help="keep the chat page running until Ctrl-C")] = False,
    verbose: Verbose = False,
) -> None:
    """The main job end to end on the bundled sample corpus: ingest → embed → evaluate → serve → ask."""
    settings = setup(verbose)
    started = time.perf_counter()
    try:
        try:
            _run(settings, question, collection, serve)
        finally:
            stop_prefect_server()
    except typer.Exit:
        raise
    except Exception as exc:  # the one-line reason here; the traceback is in the log
        log = log_file()
        if log:
            with log.open("a") as f:
                traceback.print_exc(file=f)
        fail(f"the demo failed: {reason(exc)}")
    logs_line()
    out.rule(f"done in {time.perf_counter() - started:.0f} s")


def _run(settings: Any, question: str | None, collection: str, serve: bool) -> None:
    from pipelines.sample import DEMO_QUESTION, write_sample_corpus

    question = question or DEMO_QUESTION
    stages = Stages(5)
    out.rule("[bold]ragline demo")
    out.print(f"data dir: {settings.root}", highlight=False)
    with stages.stage("corpus", "writing the sample corpus"):
        sources = write_sample_corpus(settings.root / "sample-corpus")
    stages.ok(f"sample corpus: {len(sources)} sources in {settings.root / 'sample-corpus'}")

    from flows.embed import embed_flow
    from flows.ingest import ingest_flow

    with stages.stage("ingest", "ingest flow: parse → data contract → chunks (Prefect)"):
        ing = ingest_flow([str(s) for s in sources], collection)
    stages.ok(
        f"ingest: {ing['inputs']} inputs = {ing['documents']} new/changed + {ing['unchanged']} unchanged"
        f" + {ing['quarantined']} quarantined → {ing['chunks']} chunks"
    )
    with stages.stage("embed", "embed flow: Ray Data actor pool → LanceDB (the first run loads the model)"):
        emb = embed_flow(collection)
    stages.ok(
        f"embed: {emb['embedded']} embedded, {emb['skipped']} already there ({emb['rows_per_s']} rows/s)"
        f" → {emb['table']} v{emb['table_version']}"
    )
    from flows.evaluate import evaluate_flow

    with stages.stage("evaluate", "evaluate flow: the hand-checked evaluation set → metrics → MLflow"):
        ev = evaluate_flow(collection, str(settings.root / "sample-corpus" / "eval"))
    m = ev["metrics"]
    stages.ok(
        f"evaluate: {ev['queries']} queries, nDCG@10 {m['ndcg@10']:.3f}, recall@10 {m['recall@10']:.3f},"
        f" MRR@10 {m['mrr@10']:.3f} → MLflow run {ev['mlflow_run_id'][:8]}"
    )

    import httpx

    from serving import runner

    try:
        with stages.stage("serve", "starting Ray Serve (retriever with its query embedder, generator)"):
            url = runner.start(settings.model_copy(update={"serve_log_level": "WARNING"}))
        stages.ok(f"serving at {url}")
        out.print(f"\n[bold]Question:[/] {question}", highlight=False)
        began = time.perf_counter()
        with Status("generating the answer on CPU"):
            body = {"message": question, "collection": collection}
            r = httpx.post(f"{url}/v1/chat", json=body, timeout=300)
        if r.status_code != 200:
            fail(f"chat failed: {r.status_code} {r.text}")
        stages.done.append(("answer", time.perf_counter() - began))
        show_answer(r.json())
        _next_steps(settings, ing, emb, ev, stages)
        if serve:
            _serve_until_interrupted(url, collection)
    finally:
        began = time.perf_counter()
        with Status("stopping Serve and Ray"):
            runner.stop()
        out.print(f"[dim]stopped Serve and Ray in {time.perf_counter() - began:.1f} s[/]")


def _next_steps(settings: Any, ing: dict, emb: dict, ev: dict, stages: Stages) -> None:
    out.print(f"\n[bold]Where it went[/] [dim](stage times: {stages.summary()})[/]")
    flows = (("ingest", ing), ("embed", emb), ("evaluate", ev))
    runs = ", ".join(f"{name} {r['flow_run_id'][:8]}" for name, r in flows)
    out.print(f"  Prefect flow runs: {runs} (history in {settings.prefect_home})", highlight=False)
    out.print(f"  MLflow run: {ev['mlflow_url']}", highlight=False)
    out.print("\n[bold]Next[/]")
    out.print("  ragline up                        # Prefect UI with these runs, MLflow UI, the chat page")
    out.print("  ragline demo --serve              # this demo, then the chat page until Ctrl-C")
    out.print("  ragline ingest <folder> -c docs   # your own documents; then embed, evaluate, serve")


def _serve_until_interrupted(url: str, collection: str) -> None:
    hint = f"[dim](collection {collection}; Ctrl-C stops)[/]"
    out.print(f"\n[bold]Chat page:[/] {url}/ {hint}", highlight=False)
    stop = {"now": False}

    def _interrupt(_signum: int, _frame: Any) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        while not stop["now"]:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
