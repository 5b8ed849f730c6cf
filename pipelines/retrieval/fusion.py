"""Rank fusion: hybrid mode merges the vector and full-text rankings with weighted reciprocal rank
fusion, score(d) = sum over rankings r of weight_r / (rrf_k + rank_r(d))."""

from __future__ import annotations


def rrf_fuse(rankings: list[tuple[list[str], float]], k: int) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores
