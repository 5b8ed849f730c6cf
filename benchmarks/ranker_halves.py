"""Does the feature ranker generalise (issue 16)? The evaluation set is halved at random, again and
again; each time the ranker is learned on one half as `ragline optimize` learns it on its search
split (with the same cross-validation gate), and the other half, which it never saw, is scored
reranked against the fused ranking the ranker reorders (the baseline, in the same run).

    python benchmarks/ranker_halves.py [--halvings 30] [--dataset DIR] [--json]

Prints how often the ranker was kept and its nDCG@10 gain on the unseen halves (a halving where it
was not kept gains 0: the fused ranking is served); nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.report import add_json_flag, emit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--halvings", type=int, default=30)
    p.add_argument("--dataset", help="a BEIR-layout set of the sample corpus (default: the bundled one)")
    p.add_argument("--confidence", type=float, default=1.0, help="the keep rule's standard errors")
    add_json_flag(p)
    args = p.parse_args()
    os.environ["RAGLINE_DATA_DIR"] = tempfile.mkdtemp(prefix="rl-halves-")
    import numpy as np

    from flows.evaluate import load_evalset, make_evaluator
    from flows.refresh import refresh_flow
    from pipelines.evaluation.evalsets import BUNDLED
    from pipelines.optimization.ranker import judge, score, train_ranker
    from pipelines.retrieval import RetrievalConfig
    from pipelines.sample import write_sample_corpus
    from pipelines.settings import get_settings

    settings = get_settings()
    refresh_flow([str(s) for s in write_sample_corpus(settings.root / "corpus")], "sample")
    evalset, _ = load_evalset(args.dataset or str(BUNDLED), "sample")
    evaluator = make_evaluator(settings, "sample", RetrievalConfig.from_settings(settings))
    judged = judge(evaluator.retriever, evaluator.embedder, evalset)
    gains, kept = [], 0
    for seed in range(args.halvings):
        order = list(range(len(judged)))
        random.Random(seed).shuffle(order)
        seen = [judged[i] for i in order[: len(order) // 2]]
        unseen = [judged[i] for i in order[len(order) // 2 :]]
        result = train_ranker(seen, evalset.qrels, confidence=args.confidence)
        fused = float(np.mean(list(score(unseen, evalset.qrels, None, 0).values())))
        reranked = fused
        if result.ranker is not None:
            kept += 1
            per_query = score(unseen, evalset.qrels, result.ranker, result.depth)
            reranked = float(np.mean(list(per_query.values())))
        gains.append(reranked - fused)
        state = "kept    " if result.ranker is not None else "not kept"
        print(f"halving {seed:2d}: {state}  unseen half {fused:.4f} -> {reranked:.4f}")
    figures = {
        "questions": len(judged),
        "halvings": args.halvings,
        "kept": kept,
        "mean_gain_ndcg@10": round(statistics.mean(gains), 4),
        "worst_gain_ndcg@10": round(min(gains), 4),
        "best_gain_ndcg@10": round(max(gains), 4),
        "losses_over_0.005": sum(g < -0.005 for g in gains),
    }
    mean, worst, best = (figures[f"{k}_gain_ndcg@10"] for k in ("mean", "worst", "best"))
    print(f"kept {kept}/{args.halvings}; unseen-half gain {mean:+.4f}, worst {worst:+.4f}, best {best:+.4f}")
    emit(args, figures)


if __name__ == "__main__":
    main()
