"""Fine-tuning at collection scale (issue 16): a collection of N real passages (docstrings) with a
synthetic starter evaluation set, then `finetune` as the CLI runs it, timed stage by stage; the
goal is the training job within its budget and the whole fine-tuning within 15 minutes for 2,000
documents on 2 cores, the same job unchanged on a GPU worker.

    python benchmarks/finetune_scale.py [--docs 2000] [--time-budget 600] [--json]

Prints seconds per stage and the held-out scores of the tuned model and the incumbent; nothing is
asserted (these machines are noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.corpus import passages
from benchmarks.report import add_json_flag, emit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--docs", type=int, default=2000)
    p.add_argument("--time-budget", type=float, default=600.0, help="seconds for the training job")
    p.add_argument("--questions", type=int, default=60, help="starter evaluation set size")
    add_json_flag(p)
    args = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="rl-ft-"))
    os.environ["RAGLINE_DATA_DIR"] = str(root / "data")
    os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
    import polars as pl

    from flows.embed import embed_flow
    from flows.finetune import finetune_flow
    from flows.ingest import ingest_flow
    from pipelines.evaluation.evalsets import starter_set
    from pipelines.settings import get_settings
    from pipelines.store import Store

    corpus = root / "corpus.jsonl"
    with corpus.open("w") as fh:
        for i, text in enumerate(passages(args.docs, min_chars=200, max_chars=2000)):
            title = text.split("\n", 1)[0][:80]
            fh.write(json.dumps({"_id": f"doc{i}", "title": title, "text": text}) + "\n")
    t = time.perf_counter()
    ingested = ingest_flow([str(corpus)], "scale", format="beir")
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    embed_flow("scale")
    embed_s = time.perf_counter() - t
    chunks = pl.from_arrow(Store.from_settings(get_settings()).chunks("scale").to_arrow())
    assert isinstance(chunks, pl.DataFrame)
    evalset = starter_set(chunks, root / "eval", n=args.questions)
    t = time.perf_counter()
    result = finetune_flow("scale", str(evalset), time_budget_s=args.time_budget)
    finetune_s = time.perf_counter() - t
    training = result["training"]
    figures = {
        "documents": ingested["documents"],
        "chunks": ingested["chunks"],
        "pairs": result["pairs"],
        "time_budget_s": args.time_budget,
        "train_s": training["seconds"],
        "train_steps": training["steps"],
        "planned_steps": training["planned_steps"],
        "budget_respected": training["seconds"] <= args.time_budget,
        "finetune_flow_s": round(finetune_s, 1),  # pairs, training, re-embedding, four evaluations
        "ingest_s": round(ingest_s, 1),
        "embed_s": round(embed_s, 1),
        "holdout_ndcg@10_tuned": result["scores"]["holdout_tuned"].get("ndcg@10"),
        "holdout_ndcg@10_incumbent": result["scores"]["holdout_incumbent"].get("ndcg@10"),
        "promoted": result["promoted"],
        "device": training["device"],
    }
    for key, value in figures.items():
        print(f"{key:>28}: {value}")
    emit(args, figures)


if __name__ == "__main__":
    main()
