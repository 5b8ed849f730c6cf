"""Rank fusion: hybrid mode merges the vector and full-text rankings with weighted reciprocal rank
fusion, score(c) = sum over rankings r of weight_r / (rrf_k + place_r(c)).

The length prior (off by default; `ragline optimize` tries it for each collection): a document cut
into n chunks has n chances to place one high, and if its chunks were no better than chance its
best one would place about n times higher than a one-chunk document's. So a chunk's place r counts
as r * n**length_prior: 0 trusts every place, 1 discounts a long document's lead as pure chance,
and a one-chunk document is never moved.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping


def rrf_fuse(
    rankings: list[tuple[list[str], float]], k: int, scale: Callable[[str], float] | None = None
) -> dict[str, float]:
    """SCALE: a factor on an item's places (the length prior's), 1 when None."""
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids, start=1):
            place = rank * scale(item) if scale else rank
            scores[item] = scores.get(item, 0.0) + weight / (k + place)
    return scores


def length_scale(chunks: Mapping[str, int], prior: float) -> Callable[[str], float] | None:
    """The factor on the places of a document's chunks under PRIOR (CHUNKS: chunks per document)."""
    if not prior:
        return None
    return lambda doc: float(max(chunks.get(doc, 1), 1)) ** prior
