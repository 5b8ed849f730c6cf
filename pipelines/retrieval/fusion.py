"""Rank fusion: hybrid mode merges the vector and full-text rankings with weighted reciprocal rank
fusion, score(d) = sum over rankings r of weight_r / (rrf_k + rank_r(d)).

Two refinements, both off by default and learned per collection by `ragline optimize`:
- `documents` fusion ranks whole documents (each at its best chunk in each ranking), so a document
  found by both searches through different chunks counts as found by both;
- a length prior: a document cut into many chunks has that many chances to place one high by
  chance, so its score loses `length_prior * ln(chunks) / (rrf_k + 1)` (a one-chunk document
  nothing; the scale is that of one first place in a ranking).
"""

from __future__ import annotations

import math
from collections.abc import Mapping


def rrf_fuse(rankings: list[tuple[list[str], float]], k: int) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


def length_penalty(chunks: int, prior: float, k: int) -> float:
    """What a document of CHUNKS chunks loses under the length prior PRIOR (rrf_k K)."""
    return prior * math.log(max(chunks, 1)) / (k + 1)


def document_fuse(
    rankings: list[tuple[list[tuple[str, str]], float]],
    k: int,
    prior: float = 0.0,
    chunks: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """Chunk scores from a fusion of document rankings. RANKINGS: (chunk id, document id) pairs,
    best first, with the ranking's weight; CHUNKS: chunks per document (for the length prior).

    A document's score is the RRF of its places among documents (its best chunk in each ranking),
    less its length penalty; its best chunk (by chunk-level RRF) gets that score and each other
    chunk loses what it trails the best one by, so documents keep their order and a strong second
    chunk of a document can still come before a weaker document."""
    per_chunk = rrf_fuse([([c for c, _ in ranked], w) for ranked, w in rankings], k)
    doc_of = {c: d for ranked, _ in rankings for c, d in ranked}
    per_doc = rrf_fuse([(list(dict.fromkeys(d for _, d in ranked)), w) for ranked, w in rankings], k)
    counts = chunks or {}
    if prior:
        per_doc = {d: s - length_penalty(counts.get(d, 1), prior, k) for d, s in per_doc.items()}
    best: dict[str, float] = {}
    for c, s in per_chunk.items():
        best[doc_of[c]] = max(best.get(doc_of[c], s), s)
    return {c: per_doc[doc_of[c]] - (best[doc_of[c]] - s) for c, s in per_chunk.items()}
