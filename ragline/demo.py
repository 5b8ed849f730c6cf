"""`ragline demo`: the main job end to end on the bundled sample corpus."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from ragline.console import Collection, fail, out, setup
from ragline.service import show_answer


def demo(
    question: Annotated[str | None, typer.Option(help="the question to ask at the end")] = None,
    collection: Collection = "sample",
) -> None:
    """The main job end to end on the bundled sample corpus: ingest → embed → evaluate → serve → ask."""
    settings = setup()
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
            fail(f"chat failed: {r.status_code} {r.text}")
        show_answer(r.json())
    finally:
        with out.status("shutting down Serve and Ray"):
            runner.stop()
    out.rule(f"done in {time.perf_counter() - started:.0f} s")
