"""Learning the feature ranker (retrieval/ltr.py) of one RAG config from an evaluation set's search
split: each judged question is searched once (no reranking), every hit is labelled with its
document's relevance grade, and a linear model is fitted to the pairs of hits whose grades differ
(pairwise logistic regression, scikit-learn's `LogisticRegression`; each question weighs the same
however many pairs it gives).

The model is trained on the very questions the search split scores, so its search-split figure
would flatter it. The figure this stage reports and chooses by is cross-validated instead: the
questions are split in folds, each fold reranked by a model fitted on the others. The rerank depth
and the regularisation are chosen the same way, and the ranker is kept only when it beats the
fused ranking it reorders; the caller's held-out split then judges it like any other candidate.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pipelines.evaluation.evalsets import EvalSet
from pipelines.evaluation.metrics import document_ranking, retrieval_scores
from pipelines.retrieval.ltr import FEATURES, FeatureRanker, features
from pipelines.retrieval.query import Hit, Query

log = logging.getLogger(__name__)
DEPTHS: tuple[int, ...] = (10, 20, 40)
STRENGTHS: tuple[float, ...] = (0.003, 0.03, 0.3)  # LogisticRegression's C: smaller is more regularised
MIN_QUERIES = 8  # fewer judged questions than this teach the model nothing it can be trusted with
_METRIC = "ndcg@10"
_PRIOR = FEATURES.index("fused_position")
_UNPENALISED = 100.0


class Searcher(Protocol):
    def retrieve_many(self, queries: Sequence[Query]) -> list[list[Hit]]: ...


class Encoder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


@dataclass
class Judged:
    """One training question: its fused hits (best first) and their grades."""

    query_id: str
    text: str
    hits: list[Hit]
    grades: np.ndarray
    rows: np.ndarray = field(init=False)  # FEATURES per hit, of the whole list

    def __post_init__(self) -> None:
        self.rows = features(self.text, self.hits)


@dataclass
class RankerResult:
    ranker: FeatureRanker | None
    depth: int
    strength: float
    queries: int
    cv: dict[str, float]  # cross-validated nDCG@10: "fused" and one per (depth, strength) tried
    reason: str
    extra: int = 0  # questions of EXTRA (a feedback export) that trained it: a relevant hit in reach

    def summary(self) -> dict[str, Any]:
        return {
            "kept": self.ranker is not None,
            "depth": self.depth,
            "strength": self.strength,
            "queries": self.queries,
            "feedback_queries": self.extra,
            "cv_fused_ndcg@10": round(self.cv.get("fused", 0.0), 4),
            "cv_ranker_ndcg@10": round(max((v for k, v in self.cv.items() if k != "fused"), default=0.0), 4),
            "reason": self.reason,
        }


def judge(searcher: Searcher, encoder: Encoder, evalset: EvalSet, vectors: bool = True) -> list[Judged]:
    """Every judged question of EVALSET searched once at the deepest depth, its hits graded."""
    ids = [q for q in evalset.queries["_id"].to_list() if evalset.qrels.get(q)]
    texts = dict(zip(evalset.queries["_id"].to_list(), evalset.queries["text"].to_list(), strict=True))
    if not ids:
        return []
    embedded = encoder.embed([texts[q] for q in ids]) if vectors else [None] * len(ids)
    found = searcher.retrieve_many(
        [Query(texts[q], v, top_k=max(DEPTHS)) for q, v in zip(ids, embedded, strict=True)]
    )
    out = []
    for q, hits in zip(ids, found, strict=True):
        grades = np.asarray([float(evalset.qrels[q].get(h.doc_id, 0)) for h in hits])
        out.append(Judged(q, texts[q], hits, grades))
    return out


def fit(judged: Sequence[Judged], depth: int, strength: float) -> FeatureRanker | None:
    """The pairwise model of the first DEPTH hits of each question; None without a single pair."""
    from sklearn.linear_model import LogisticRegression

    blocks = [j.rows[:depth] for j in judged if j.hits]
    if not blocks:
        return None
    rows = np.vstack(blocks)
    mean, scale = rows.mean(axis=0), rows.std(axis=0)
    scale[scale < 1e-9] = 1.0
    diffs, weights = [], []
    for j in judged:
        x, y = (j.rows[:depth] - mean) / scale, j.grades[:depth]
        pairs = [(a, b) for a, b in itertools.permutations(range(len(y)), 2) if y[a] > y[b]]
        for a, b in pairs:
            diffs.append(x[a] - x[b])
            weights.append(1.0 / len(pairs))
    if not diffs:
        return None
    # The fused position, scaled up, is all but unpenalised: regularisation shrinks the model
    # towards the fused ranking it reorders, not towards a random order.
    free = np.ones(len(FEATURES))
    free[_PRIOR] = _UNPENALISED
    X = np.vstack([np.asarray(diffs), -np.asarray(diffs)]) * free
    labels = np.concatenate([np.ones(len(diffs)), np.zeros(len(diffs))])
    model = LogisticRegression(C=strength, fit_intercept=False, max_iter=1000)
    model.fit(X, labels, sample_weight=np.concatenate([weights, weights]))
    meta = {"depth": depth, "strength": strength, "queries": len(judged), "pairs": len(diffs)}
    return FeatureRanker(model.coef_[0] * free, mean, scale, meta=meta)


def score(
    judged: Sequence[Judged], qrels: Mapping[str, Mapping[str, int]], ranker: FeatureRanker | None, depth: int
) -> dict[str, float]:
    """Per-question nDCG@10 of the fused order (RANKER None) or of its first DEPTH hits reranked."""
    rankings = {}
    for j in judged:
        hits = ranker.rerank_many([j.text], [j.hits], depth)[0] if ranker else j.hits
        rankings[j.query_id] = document_ranking(h.doc_id for h in hits)[:10]
    wanted = {j.query_id: dict(qrels[j.query_id]) for j in judged}
    return retrieval_scores(wanted, rankings).get(_METRIC, {})


def train_ranker(
    judged: Sequence[Judged],
    qrels: Mapping[str, Mapping[str, int]],
    extra: Sequence[Judged] = (),
    depths: Sequence[int] = DEPTHS,
    strengths: Sequence[float] = STRENGTHS,
    folds: int = 5,
    seed: int = 0,
    confidence: float = 1.0,
) -> RankerResult:
    """Chooses depth and strength by cross-validated nDCG@10 on JUDGED (EXTRA, for example a
    feedback export, only ever trains), then fits the chosen model on all of it. The ranker is
    None unless its cross-validated gain over the fused ranking clears CONFIDENCE standard errors."""
    from sklearn.model_selection import KFold

    # A question with no relevant hit in reach teaches nothing (a rated-down answer's only grades are 0s).
    usable = [j for j in judged if j.grades.max(initial=0.0) > 0]
    extra = [j for j in extra if j.grades.max(initial=0.0) > 0]
    if len(usable) < MIN_QUERIES:
        reason = (
            f"{len(usable)} judged questions with a relevant hit in reach; the ranker needs {MIN_QUERIES}"
        )
        return RankerResult(None, 0, 0.0, len(usable), {}, reason, len(extra))
    splits = list(KFold(min(folds, len(usable)), shuffle=True, random_state=seed).split(usable))
    # Every judged question is scored, those with no relevant hit in reach too (they score 0 either way).
    base = score(judged, qrels, None, 0)
    cv: dict[str, float] = {"fused": float(np.mean(list(base.values())))}
    gains: dict[str, np.ndarray] = {}
    for depth, strength in itertools.product(depths, strengths):
        per_query = dict(base)
        for train, test in splits:
            model = fit([usable[i] for i in train] + list(extra), depth, strength)
            per_query |= score([usable[i] for i in test], qrels, model, depth)
        label = f"depth{depth}_c{strength}"
        cv[label] = float(np.mean(list(per_query.values())))
        gains[label] = np.asarray([per_query[q] - base[q] for q in base])
    label = max(gains, key=lambda k: cv[k])
    depth, strength = _parse(label)
    gain = cv[label] - cv["fused"]
    # The gain must clear CONFIDENCE standard errors of the per-question gains: a ranker that wins
    # on a few questions and loses on others by as much is noise, and noise does not generalise.
    margin = confidence * float(np.std(gains[label], ddof=1) / np.sqrt(len(gains[label])))
    if gain <= margin:
        reason = (
            f"cross-validated {_METRIC} {cv[label]:.4f} vs the fused ranking's {cv['fused']:.4f}: "
            f"a gain of {gain:+.4f} does not clear {confidence:g} standard error ({margin:.4f})"
        )
        return RankerResult(None, depth, strength, len(usable), cv, reason, len(extra))
    ranker = fit(list(usable) + list(extra), depth, strength)
    assert ranker is not None
    ranker.meta |= {"cv_" + _METRIC: round(cv[label], 6), "cv_fused_" + _METRIC: round(cv["fused"], 6)}
    reason = (
        f"cross-validated {_METRIC} {cv[label]:.4f} vs the fused ranking's {cv['fused']:.4f} (depth {depth})"
    )
    log.info(
        "feature ranker: %s; weights %s", reason, dict(zip(FEATURES, ranker.weights.round(3), strict=True))
    )
    return RankerResult(ranker, depth, strength, len(usable), cv, reason, len(extra))


def _parse(label: str) -> tuple[int, float]:
    depth, strength = label.removeprefix("depth").split("_c")
    return int(depth), float(strength)
