"""How hybrid search ranks a collection's documents, learned for the config search's winner: chunk
or document fusion and the length prior (retrieval/fusion.py).

A collection whose documents differ widely in length (a reference manual: topics of one chunk and
of sixty) favours the long ones, whose many chunks give them many chances to place one high; one
of short, even documents (abstracts, posts) does not. Which is the case, and how much to correct,
is a property of the collection, so it is learned on the search split: a small fixed grid is
scored there, and its best config replaces the winner's only if it scores higher than the winner
itself. The held-out split then judges it with the rest of the config, like any other candidate.
A grid of seven rather than two more dimensions of the Optuna search: with a few dozen questions,
every extra dimension there is one more chance to pick noise (benchmarks/optimize_halves.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pipelines.retrieval.query import RetrievalConfig

LENGTH_PRIORS: tuple[float, ...] = (0.0, 0.005, 0.01, 0.02, 0.04, 0.08)


def label(config: RetrievalConfig) -> str:
    return f"{config.fusion}/{config.length_prior:g}"


def grid(base: RetrievalConfig) -> list[RetrievalConfig]:
    """BASE with chunk fusion, and with document fusion at each length prior (BASE itself too).
    The prior corrects how documents are ranked, so it goes with document fusion; on chunk fusion
    it would only push every chunk of a long document down."""
    configs = [replace(base, fusion="chunks", length_prior=0.0)]
    configs += [replace(base, fusion="documents", length_prior=p) for p in LENGTH_PRIORS]
    return configs if base in configs else [base, *configs]


@dataclass
class FusionChoice:
    retrieval: RetrievalConfig
    scores: dict[str, float]  # the search split's metric per grid config (label)
    metric: str
    kept: bool
    reason: str

    def summary(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "fusion": self.retrieval.fusion,
            "length_prior": self.retrieval.length_prior,
            "reason": self.reason,
            **({"search_score": round(self.scores[label(self.retrieval)], 6)} if self.scores else {}),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
        }


def choose(base: RetrievalConfig, score: Callable[[RetrievalConfig], float], metric: str) -> FusionChoice:
    """The grid config with the best SCORE (the search split's METRIC), when it beats BASE's;
    else BASE. Only hybrid search fuses: other modes are returned as they are."""
    if base.mode != "hybrid":
        return FusionChoice(base, {}, metric, False, f"{base.mode} search fuses nothing")
    scores = {label(c): score(c) for c in grid(base)}
    configs = {label(c): c for c in grid(base)}
    own = scores[label(base)]
    top = max(scores, key=lambda k: (scores[k], k == label(base)))  # a tie keeps BASE
    kept = scores[top] > own
    chosen = configs[top] if kept else base
    reason = f"search-split {metric} {scores[top]:.4f} with {top} vs {own:.4f} with {label(base)}"
    return FusionChoice(chosen, scores, metric, kept, reason)
