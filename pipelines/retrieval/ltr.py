"""A learning-to-rank reranker over retrieval features: the first hits of a search are reordered by
a linear model of what the retriever already knows about each (its fused rank and score, its cosine
similarity and BM25 score, how much of the question its text covers, its length). It reads no
passage through a model, so it costs well under a millisecond a query on a CPU, where a
cross-encoder costs hundreds (benchmarks/serve_latency.py).

The weights are learned by `optimization/ranker.py` from the search split of an evaluation set
(pairwise logistic regression, RankSVM's formulation) and stored as one JSON file: no pickle is
ever loaded.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.retrieval.query import Hit

MODEL_FILE = "ranker.json"
FEATURES: tuple[str, ...] = (
    "fused_position",  # 1 / (1 + position in the fused ranking)
    "fused_score",  # relative to the query's best
    "similarity",  # cosine to the query (imputed below the query's lowest when the vector search missed it)
    "similarity_gap",  # to the query's best similarity
    "has_similarity",
    "bm25",  # relative to the query's best
    "has_bm25",
    "text_coverage",  # share of the question's terms in the passage
    "log_length",  # words in the passage
)
# Only what relates a hit to the question: features of a corpus's make-up (titles, a chunk's place in
# its document, how many chunks a document has among the hits) fitted a 20-question split and
# failed the other half of the sample set; they depend on how one collection was written.
_WORD = re.compile(r"[a-z0-9]+")
# Words that say nothing about what a question is after (coverage counts the rest).
_STOP = frozenset(
    "a an and are as at be by can do does for from how i in is it its of on or that the this "  # noqa: SIM905
    "to was what when where which who why will with you your".split()
)


def terms(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1}


def features(question: str, hits: Sequence[Hit]) -> np.ndarray:
    """One row of FEATURES per hit (the fused ranking of one query, best first)."""
    if not hits:
        return np.zeros((0, len(FEATURES)), dtype=np.float64)
    asked = terms(question)
    sims = [h.similarity for h in hits if h.similarity is not None]
    floor = min(sims) - 0.05 if sims else 0.0
    top_sim = max(sims) if sims else 0.0
    bm25 = [h.text_score for h in hits if h.text_score is not None]
    top_bm25 = max(bm25) if bm25 and max(bm25) > 0 else 1.0
    top_fused = max((h.score for h in hits), default=1.0) or 1.0
    rows = []
    for i, h in enumerate(hits):
        sim = h.similarity if h.similarity is not None else floor
        words = terms(h.text)
        rows.append(
            [
                1.0 / (1 + i),
                h.score / top_fused,
                sim,
                sim - top_sim,
                float(h.similarity is not None),
                (h.text_score or 0.0) / top_bm25,
                float(h.text_score is not None),
                len(asked & words) / len(asked) if asked else 0.0,
                math.log1p(len(h.text.split())),
            ]
        )
    return np.asarray(rows, dtype=np.float64)


class FeatureRanker:
    """Scores hits by WEIGHTS · (features - MEAN) / SCALE; the reranker interface of
    retrieval/rerank.py (`rerank_many`, `to_dict`, `model_path`)."""

    kind = "features"

    def __init__(
        self,
        weights: Sequence[float],
        mean: Sequence[float],
        scale: Sequence[float],
        model_path: str | Path = "",
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.weights = np.asarray(weights, dtype=np.float64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        if not self.weights.shape == self.mean.shape == self.scale.shape == (len(FEATURES),):
            raise ValueError(f"a feature ranker needs {len(FEATURES)} weights, means and scales")
        if np.any(self.scale <= 0):
            raise ValueError("feature scales must be > 0")
        self.model_path = Path(model_path) if model_path else Path()
        self.meta = meta or {}

    def scores(self, question: str, hits: Sequence[Hit]) -> np.ndarray:
        return ((features(question, hits) - self.mean) / self.scale) @ self.weights

    def rerank_many(self, queries: Sequence[str], hits: Sequence[list[Hit]], depth: int) -> list[list[Hit]]:
        """Each query's first DEPTH hits reordered by the model (its score replaces the fused one);
        the hits past DEPTH keep their order after them."""
        out: list[list[Hit]] = []
        for question, found in zip(queries, hits, strict=True):
            head = found[:depth]
            scored = [
                replace(h, score=round(float(s), 6))
                for h, s in zip(head, self.scores(question, head), strict=True)
            ]
            # stable: among equal scores the fused order stays
            out.append(sorted(scored, key=lambda h: -h.score) + list(found[depth:]))
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "features": list(FEATURES),
            "weights": self.weights.round(8).tolist(),
            "mean": self.mean.round(8).tolist(),
            "scale": self.scale.round(8).tolist(),
            "meta": self.meta,
        }

    def save(self, folder: str | Path) -> Path:
        path = Path(folder)
        path.mkdir(parents=True, exist_ok=True)
        (path / MODEL_FILE).write_text(json.dumps(self.to_dict(), indent=1))
        self.model_path = path.resolve()
        return path

    @classmethod
    def load(cls, folder: str | Path) -> FeatureRanker:
        path = Path(folder)
        try:
            data = json.loads((path / MODEL_FILE).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"feature ranker folder {path} has no {MODEL_FILE}") from None
        if data.get("features") != list(FEATURES):
            raise ValueError(f"{path / MODEL_FILE} was trained on other features: retrain it")
        return cls(data["weights"], data["mean"], data["scale"], path.resolve(), data.get("meta"))
