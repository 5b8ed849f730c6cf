"""Retrieval metrics come from ranx; one value of each is checked here by hand."""

from __future__ import annotations

import math

import pytest

from pipelines.evaluation.metrics import document_ranking, mean_scores, metric_names, retrieval_scores


def test_ranx_values_match_a_hand_computation() -> None:
    qrels = {"q1": {"d1": 2, "d3": 1}, "q2": {"d9": 1}}
    rankings = {"q1": ["d2", "d1", "d4", "d3"], "q2": ["d5", "d6"]}
    scores = retrieval_scores(qrels, rankings, ks=(1, 3, 5))
    # q1 by hand: gains (linear, as trec_eval) at ranks 2 and 4; the ideal ranking is d1 (2), d3 (1).
    dcg5 = 2 / math.log2(3) + 1 / math.log2(5)
    idcg5 = 2 / math.log2(2) + 1 / math.log2(3)
    assert scores["ndcg@5"]["q1"] == pytest.approx(dcg5 / idcg5)
    assert scores["ndcg@3"]["q1"] == pytest.approx((2 / math.log2(3)) / idcg5)
    assert scores["recall@3"]["q1"] == pytest.approx(0.5)
    assert scores["recall@5"]["q1"] == pytest.approx(1.0)
    assert scores["mrr@5"]["q1"] == pytest.approx(0.5)
    assert scores["precision@3"]["q1"] == pytest.approx(1 / 3)
    assert scores["hit_rate@1"]["q1"] == 0.0 and scores["hit_rate@3"]["q1"] == 1.0
    # q2 found nothing relevant: zeros, not a skipped query.
    assert all(scores[m]["q2"] == 0.0 for m in metric_names((1, 3, 5)))
    assert mean_scores(scores)["recall@5"] == pytest.approx(0.5)


def test_a_judged_query_without_a_ranking_scores_zero_and_unjudged_queries_are_ignored() -> None:
    scores = retrieval_scores({"q1": {"d1": 1}, "q2": {}}, {}, ks=(10,))
    assert scores["ndcg@10"] == {"q1": 0.0}


def test_documents_are_ranked_by_their_best_chunk() -> None:
    assert document_ranking(["a", "b", "a", "c", "b"]) == ["a", "b", "c"]
