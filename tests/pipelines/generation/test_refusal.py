"""Honest refusal: the evidence of a search, the decision, and the threshold learned from a set."""

from __future__ import annotations

from pipelines.generation import refusal
from pipelines.retrieval import Hit


def _hits(*similarities: float | None) -> list[Hit]:
    return [Hit(f"c{i}", "d", "t", "x", 1.0, similarity=s) for i, s in enumerate(similarities)]


def test_evidence_is_the_best_similarity_and_text_only_hits_never_refuse() -> None:
    assert refusal.evidence(_hits(0.2, 0.7, None)) == 0.7
    assert refusal.evidence([{"similarity": 0.4}, {"similarity": None}]) == 0.4  # served hits are dicts
    assert refusal.evidence(_hits(None, None)) is None
    assert refusal.refuses(_hits(0.3), 0.5) and not refusal.refuses(_hits(0.6), 0.5)
    assert not refusal.refuses(_hits(0.1), None)  # no threshold: never
    assert not refusal.refuses(_hits(None), 0.5)  # no evidence (text search): never


def test_the_refusal_answer_counts_as_a_refusal_in_the_metrics() -> None:
    from pipelines.evaluation.answer_metrics import REFUSAL

    assert REFUSAL.search(refusal.REFUSAL_ANSWER)


def test_calibration_refuses_the_unanswerable_within_the_false_refusal_limit() -> None:
    answerable = [0.62, 0.7, 0.75, 0.8, 0.55, 0.9, 0.66, 0.71, 0.77, 0.83]
    unanswerable = [0.3, 0.42, 0.5, 0.58]
    t = refusal.calibrate(answerable, unanswerable)
    assert t is not None
    refused_right = sum(u < t for u in unanswerable) / len(unanswerable)
    refused_wrong = sum(a < t for a in answerable) / len(answerable)
    assert refused_right >= 0.75 and refused_wrong <= refusal.MAX_FALSE_REFUSAL
    # Nothing to learn from: no unanswerable question, or none below every answerable one.
    assert refusal.calibrate(answerable, []) is None
    assert refusal.calibrate([0.2, 0.3], [0.9], max_false_refusal=0.0) is None


def test_cross_fitted_thresholds_never_see_their_own_question() -> None:
    """A first evaluation (no stored threshold) refuses with thresholds learned on the other folds."""
    evidence: dict[str, float | None] = {f"a{i}": 0.55 + 0.01 * i for i in range(30)}
    evidence |= {f"u{i}": 0.2 + 0.01 * i for i in range(10)} | {"text-only": None}
    answerable = {q for q in evidence if q.startswith("a")}
    thresholds = refusal.cross_fitted(evidence, answerable)
    assert set(thresholds) == set(evidence) and thresholds == refusal.cross_fitted(evidence, answerable)
    assert all(t is not None and 0.29 < t < 0.55 for t in thresholds.values())  # between the groups
    # Relabelling one question moves the other folds' thresholds, never its own.
    flipped = refusal.cross_fitted(evidence, answerable | {"u9"})
    assert flipped["u9"] == thresholds["u9"]
    assert any(flipped[q] != thresholds[q] for q in evidence if q != "u9")
    # No unanswerable question elsewhere: nothing to learn from, no threshold.
    assert set(refusal.cross_fitted({"a1": 0.6, "a2": 0.7}, {"a1", "a2"}).values()) == {None}
