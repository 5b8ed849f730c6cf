"""The evaluation-set contract leaves bad rows out, counted and explained."""

from __future__ import annotations

import polars as pl

from data_contracts import check_evalset


def test_bad_queries_and_qrels_are_rejected_with_reasons() -> None:
    queries = pl.DataFrame(
        {"_id": ["q1", "q1", "q2", "q3"], "text": ["a?", "dup?", "", "c?"], "synthetic": [False] * 4}
    )
    qrels = pl.DataFrame(
        {
            "query-id": ["q1", "q2", "q3", "qx"],
            "corpus-id": ["d1", "d1", "missing", "d1"],
            "score": [1, 1, 1, 1],
        }
    )
    check = check_evalset(queries, qrels, ["d1", "d2"])
    assert check.queries["_id"].to_list() == ["q1", "q3"]
    assert check.qrels.rows() == [("q1", "d1", 1)]
    assert check.counts == {"queries": 2, "qrels": 1, "rejected_queries": 2, "rejected_qrels": 3}
    reasons = dict(zip(check.rejected["row"], check.rejected["reason"], strict=True))
    assert reasons["q2"] == "query text empty or too long"
    assert "unknown query" in reasons["q2 → d1"] and "unknown query" in reasons["qx → d1"]
    assert reasons["q3 → missing"] == "qrel names a document not in the corpus"
