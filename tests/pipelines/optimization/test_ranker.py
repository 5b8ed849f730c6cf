"""Learning the feature ranker (optimization/ranker.py) on judged questions built here: the fused
order hides the relevant passage at a random place, its text is what gives it away. The ranker must
find that out under cross-validation, and refuse when there is too little to learn from."""

from __future__ import annotations

import random

import numpy as np

from pipelines.optimization.ranker import MIN_QUERIES, Judged, train_ranker
from pipelines.retrieval.ltr import FEATURES
from pipelines.retrieval.query import Hit

WORDS = "amber basalt cedar delta ember fjord garnet harbor iris jade kelp lumen moss nectar opal".split()  # noqa: SIM905


def _judged(n: int, seed: int = 0) -> tuple[list[Judged], dict[str, dict[str, int]]]:
    rng = random.Random(seed)
    judged, qrels = [], {}
    for q in range(n):
        topic = rng.sample(WORDS, 2)
        where = rng.randrange(1, 12)  # never first: the fused order is wrong
        hits = []
        for i in range(12):
            words = topic if i == where else rng.sample([w for w in WORDS if w not in topic], 2)
            sim = 0.6 - i * 0.02 + rng.uniform(-0.01, 0.01)
            hits.append(Hit(f"q{q}c{i}", f"q{q}d{i}", "t", " ".join(words), 1 / (60 + i), similarity=sim))
        qrels[f"q{q}"] = {f"q{q}d{where}": 1}
        grades = np.asarray([1.0 if i == where else 0.0 for i in range(12)])
        judged.append(Judged(f"q{q}", f"what about {topic[0]} {topic[1]}?", hits, grades))
    return judged, qrels


def test_the_ranker_learns_what_predicts_relevance_and_beats_the_fused_order_under_cv() -> None:
    judged, qrels = _judged(24)
    result = train_ranker(judged, qrels, depths=(20,), strengths=(1.0,))
    assert result.ranker is not None, result.reason
    assert result.cv["depth20_c1.0"] > result.cv["fused"] + 0.3
    weights = dict(zip(FEATURES, result.ranker.weights, strict=True))
    assert max(weights, key=lambda k: abs(weights[k])) == "text_coverage" and weights["text_coverage"] > 0
    summary = result.summary()
    assert summary["kept"] and summary["depth"] == 20 and summary["queries"] == 24
    # a gain must clear CONFIDENCE standard errors of the per-question gains
    doubted = train_ranker(judged, qrels, depths=(20,), strengths=(1.0,), confidence=1e6)
    assert doubted.ranker is None and "standard error" in doubted.reason
    # a feedback export's questions only train: counted when a relevant hit is in reach (a rated-down
    # answer's cited passages are all judged not relevant, so it has none and teaches nothing)
    rated, _ = _judged(6, seed=2)
    rated[0].grades = np.zeros_like(rated[0].grades)
    fed = train_ranker(judged, qrels, extra=rated, depths=(20,), strengths=(1.0,))
    assert fed.ranker is not None and fed.summary()["feedback_queries"] == 5 and fed.queries == 24
    assert not np.allclose(fed.ranker.weights, result.ranker.weights)
    fresh, _ = _judged(4, seed=1)  # questions it never saw
    for j in fresh:
        ((top, *_),) = result.ranker.rerank_many([j.text], [j.hits], 20)
        assert j.grades[[h.id for h in j.hits].index(top.id)] == 1.0


def test_too_few_questions_or_no_gain_keeps_the_fused_ranking() -> None:
    judged, qrels = _judged(MIN_QUERIES - 1)
    few = train_ranker(judged, qrels)
    assert few.ranker is None and f"needs {MIN_QUERIES}" in few.reason
    judged, qrels = _judged(12)
    for j in judged:  # now the fused order is already right: nothing to gain
        j.hits.insert(0, j.hits.pop(int(np.argmax(j.grades))))
        j.grades = np.sort(j.grades)[::-1]
        j.__post_init__()
    same = train_ranker(judged, qrels, depths=(10,), strengths=(1.0,))
    assert same.ranker is None and "does not clear" in same.reason and same.cv["fused"] == 1.0
