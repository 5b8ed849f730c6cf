"""Retrieval metrics at document level, computed by `ranx` (the same definitions as trec_eval:
nDCG with linear gains, recall, MRR, precision and hit rate at k), and latency percentiles."""

from __future__ import annotations

import warnings
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
    from ranx import Qrels, Run, evaluate

    # ranx wants a score per document; a strictly decreasing one preserves the ranking exactly.
    run = {q: {d: 1.0 / (i + 1) for i, d in enumerate(rankings[q])} for q in judged if rankings.get(q)}
    names = metric_names(ks)
    if not run:  # ranx cannot build an empty run; nothing retrieved scores 0 everywhere
        return {m: dict.fromkeys(judged, 0.0) for m in names}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # numba's type-safety notes from inside ranx
        ranx_run = Run(run)
        evaluate(Qrels(judged), ranx_run, names, make_comparable=True)
    return {m: {q: float(v) for q, v in ranx_run.scores[m].items()} for m in names}


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
