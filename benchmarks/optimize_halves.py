"""Does `ragline optimize` generalise (issue 16)? The evaluation set is halved at random, again and
again; each time the real optimize flow (config search on its search split, feature ranker, the
held-out gate, promotion) sees one half, and the champion it leaves is scored on the other half,
which it never saw, against the untouched defaults on the same questions (measured in the same run).

    python benchmarks/optimize_halves.py [--halvings 8] [--trials 20] [--chunking] [--dataset DIR] [--json]

Each halving starts from no champion. A halving where the defaults stay champion gains 0. Prints
the mean nDCG@10 / Recall@10 / MRR@10 of the defaults and of the champions on the unseen halves,
and the gain per halving; nothing is asserted. One halving takes about a minute on 2 cores with
20 trials and no chunking search.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import add_json_flag, emit

METRICS = ("ndcg@10", "recall@10", "mrr@10")


def write_half(source: Path, ids: set[str], dest: Path) -> Path:
    """The BEIR folder SOURCE restricted to the queries IDS (queries, qrels, answers)."""
    (dest / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("queries.jsonl", "answers.jsonl"):
        if (source / name).exists():
            rows = [line for line in (source / name).read_text().splitlines() if line.strip()]
            kept = [line for line in rows if json.loads(line)["_id"] in ids]
            (dest / name).write_text("\n".join(kept) + "\n")
    header, *rows = (source / "qrels" / "test.tsv").read_text().splitlines()
    kept = [r for r in rows if r.split("\t")[0] in ids]
    (dest / "qrels" / "test.tsv").write_text("\n".join([header, *kept]) + "\n")
    return dest


def per_query(report: Any, ids: set[str]) -> dict[str, list[float]]:
    """The judged questions of IDS: each metric's per-question scores in REPORT (an EvalReport)."""
    frame = report.per_query
    rows = [r for r in frame.iter_rows(named=True) if r["query_id"] in ids and r.get("ndcg@10") is not None]
    return {m: [float(r[m]) for r in rows] for m in METRICS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--halvings", type=int, default=8)
    p.add_argument("--trials", type=int, default=20)
    p.add_argument("--chunking", action="store_true", help="search chunk sizes too (re-embeds)")
    p.add_argument("--dataset", help="a BEIR-layout set of the sample corpus (default: the bundled one)")
    add_json_flag(p)
    args = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rl-opt-halves-"))
    os.environ["RAGLINE_DATA_DIR"] = str(root / "data")
    import mlflow
    from mlflow.exceptions import MlflowException

    from flows.evaluate import load_evalset, make_evaluator
    from flows.optimize import optimize_flow
    from flows.refresh import refresh_flow
    from pipelines.evaluation.evalsets import BUNDLED
    from pipelines.evaluation.tracking import CHAMPION
    from pipelines.retrieval import RetrievalConfig
    from pipelines.sample import write_sample_corpus
    from pipelines.settings import get_settings
    from pipelines.store import Store

    settings = get_settings()
    source = Path(args.dataset or BUNDLED)
    refresh_flow([str(s) for s in write_sample_corpus(settings.root / "corpus")], "sample")
    evalset, _ = load_evalset(str(source), "sample")
    ids = evalset.queries["_id"].to_list()
    # The defaults, on every question once (before any champion moves the active table).
    defaults = make_evaluator(settings, "sample", RetrievalConfig.from_settings(settings)).run(evalset)
    store, client = Store.from_settings(settings), mlflow.MlflowClient(settings.mlflow_uri)
    rows = []
    for seed in range(args.halvings):
        order = list(ids)
        random.Random(seed).shuffle(order)
        seen, unseen = set(order[: len(order) // 2]), set(order[len(order) // 2 :])
        store.set_champion("sample", None)  # each halving starts from the defaults
        with contextlib.suppress(MlflowException):
            client.delete_registered_model_alias("sample", CHAMPION)
        result = optimize_flow(
            "sample",
            str(write_half(source, seen, root / f"seen-{seed}")),
            trials=args.trials,
            chunking=args.chunking,
        )
        champion = make_evaluator(settings, "sample").run(evalset)
        base, tuned = per_query(defaults, unseen), per_query(champion, unseen)
        row = {m: (statistics.mean(base[m]), statistics.mean(tuned[m])) for m in METRICS}
        params = (store.champion("sample") or {}).get("retrieval", {})
        changed = {k: v for k, v in params.items() if v != getattr(RetrievalConfig(), k, v)}
        rows.append(row | {"promoted": result["promoted"], "changed": changed})
        gain = row["ndcg@10"][1] - row["ndcg@10"][0]
        print(
            f"halving {seed:2d}: unseen nDCG@10 {row['ndcg@10'][0]:.4f} -> {row['ndcg@10'][1]:.4f} "
            f"({gain:+.4f}); champion {changed or 'the defaults'}",
            flush=True,
        )
    gains = [r["ndcg@10"][1] - r["ndcg@10"][0] for r in rows]
    figures = {
        "questions": len(ids),
        "halvings": args.halvings,
        "trials": args.trials,
        "chunking": args.chunking,
        **{f"defaults_{m}": round(statistics.mean(r[m][0] for r in rows), 4) for m in METRICS},
        **{f"champion_{m}": round(statistics.mean(r[m][1] for r in rows), 4) for m in METRICS},
        "mean_gain_ndcg@10": round(statistics.mean(gains), 4),
        "worst_gain_ndcg@10": round(min(gains), 4),
        "best_gain_ndcg@10": round(max(gains), 4),
        "losses_over_0.005": sum(g < -0.005 for g in gains),
        "defaults_kept": sum(not r["changed"] for r in rows),
    }
    print(
        f"unseen halves: nDCG@10 {figures['defaults_ndcg@10']:.4f} (defaults) -> "
        f"{figures['champion_ndcg@10']:.4f} (champion); gain {figures['mean_gain_ndcg@10']:+.4f}, "
        f"worst {figures['worst_gain_ndcg@10']:+.4f}, {figures['losses_over_0.005']} losses over 0.005"
    )
    emit(args, figures)


if __name__ == "__main__":
    main()
