"""Retrieval metrics at document level, computed by trec_eval itself (`pytrec_eval`): nDCG with
linear gains, recall, MRR, precision and hit rate at k; and latency percentiles. (ranx, used
before, gave the same figures but compiled itself with numba in every process: 12-57 s.)"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

KS: tuple[int, ...] = (1, 3, 5, 10)
RETRIEVAL_METRICS: tuple[str, ...] = ("ndcg", "recall", "mrr", "precision", "hit_rate")


def metric_names(ks: Sequence[int] = KS) -> list[str]:
    return [f"{m}@{k}" for m in RETRIEVAL_METRICS for k in ks]


def document_ranking(doc_ids: Iterable[str]) -> list[str]:
    """Chunks ranked best-first → documents ranked by their best chunk (first appearance)."""
    seen: dict[str, None] = {}
    for d in doc_ids:
        seen.setdefault(d, None)
    return list(seen)


def retrieval_scores(
    qrels: dict[str, dict[str, int]], rankings: dict[str, list[str]], ks: Sequence[int] = KS
) -> dict[str, dict[str, float]]:
    """Per-query scores {metric: {query id: value}} for every query that has relevance judgements.

    A judged query with an empty ranking scores 0 on everything (it is not skipped).
    """
    judged = {q: docs for q, docs in qrels.items() if docs}
    if not judged:
        return {}
    import pytrec_eval

    names = metric_names(ks)
    scores: dict[str, dict[str, float]] = {m: dict.fromkeys(judged, 0.0) for m in names}
    cuts = ",".join(str(k) for k in ks)
    # trec_eval wants a score per document; a strictly decreasing one preserves the ranking exactly.
    run = {q: _scored(rankings[q]) for q in judged if rankings.get(q)}
    cut = pytrec_eval.RelevanceEvaluator(judged, {f"ndcg_cut.{cuts}", f"recall.{cuts}", f"P.{cuts}"})
    for q, values in cut.evaluate(run).items():
        for k in ks:
            scores[f"ndcg@{k}"][q] = values[f"ndcg_cut_{k}"]
            scores[f"recall@{k}"][q] = values[f"recall_{k}"]
            scores[f"precision@{k}"][q] = values[f"P_{k}"]
    rank = pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"})
    for k in ks:  # trec_eval's reciprocal rank has no cut-off: score the top k
        top = {q: _scored(rankings[q][:k]) for q in run}
        for q, values in rank.evaluate(top).items():
            scores[f"mrr@{k}"][q] = values["recip_rank"]
            scores[f"hit_rate@{k}"][q] = float(values["recip_rank"] > 0)
    return scores


def _scored(ranking: list[str]) -> dict[str, float]:
    return {d: 1.0 / (i + 1) for i, d in enumerate(ranking)}


def mean_scores(per_query: dict[str, dict[str, float]]) -> dict[str, float]:
    return {m: float(np.mean(list(v.values()))) if v else 0.0 for m, v in per_query.items()}


def percentiles(values_ms: Sequence[float], prefix: str) -> dict[str, float]:
    if not values_ms:
        return {}
    arr = np.asarray(values_ms, dtype=float)
    return {
        f"{prefix}_p50_ms": float(np.percentile(arr, 50)),
        f"{prefix}_p95_ms": float(np.percentile(arr, 95)),
        f"{prefix}_mean_ms": float(arr.mean()),
    }
