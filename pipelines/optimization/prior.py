"""The length prior of hybrid search (retrieval/fusion.py), tried for the config search's winner.

A collection whose documents differ widely in length (a reference manual: topics of one chunk and
of sixty) favours the long ones, whose many chunks give them many chances to place one high; one
of short, even documents (abstracts, posts) is not moved by the prior at all. Whether it helps is a
property of the collection, so it is tried on the search split: the winner with the prior at the
middle of its range (halfway, in log places, between trusting a long document's lead and taking it
for chance) replaces the winner only if it scores higher there, and the held-out split then judges
it with the rest of the config.

One value, not a grid: on the sample set every prior from 0.25 to 0.625 scored within 0.003 nDCG@10
of each other on the whole set, while a grid of five, chosen on a dozen questions as optimize
chooses, picked the sharper ones by chance and lost up to 0.077 on the unseen questions of some
random halvings (300, replayed from the retriever's per-question scores; the one value lost on
none).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pipelines.retrieval.query import RetrievalConfig

LENGTH_PRIOR = 0.5


@dataclass
class PriorChoice:
    retrieval: RetrievalConfig
    scores: dict[float, float]  # the search split's metric per length prior tried
    kept: bool
    reason: str

    def summary(self) -> dict[str, Any]:
        chosen = self.retrieval.length_prior
        return {
            "kept": self.kept,
            "length_prior": chosen,
            "reason": self.reason,
            **({"search_score": round(self.scores[chosen], 6)} if self.scores else {}),
            "scores": {f"{p:g}": round(v, 4) for p, v in self.scores.items()},
        }


def choose(base: RetrievalConfig, score: Callable[[RetrievalConfig], float], metric: str) -> PriorChoice:
    """BASE with the length prior (or without it, when BASE has one) if that scores higher by
    SCORE (the search split's METRIC); else BASE. Only hybrid search fuses rankings: other modes
    are returned as they are."""
    if base.mode != "hybrid":
        return PriorChoice(base, {}, False, f"{base.mode} search fuses nothing")
    other = replace(base, length_prior=0.0 if base.length_prior else LENGTH_PRIOR)
    scores = {base.length_prior: score(base), other.length_prior: score(other)}
    kept = scores[other.length_prior] > scores[base.length_prior]
    reason = (
        f"search-split {metric} {scores[other.length_prior]:.4f} with length prior "
        f"{other.length_prior:g} vs {scores[base.length_prior]:.4f} with {base.length_prior:g}"
    )
    return PriorChoice(other if kept else base, scores, kept, reason)
