import pytest

from pipelines.retrieval import RetrievalConfig, rrf_fuse, where_clause


def test_rrf_rewards_agreement_and_weights() -> None:
    scores = rrf_fuse([(["a", "b", "c"], 1.0), (["b", "d"], 1.0)], k=60)
    assert max(scores, key=scores.get) == "b"  # ranked by both
    assert scores["a"] == pytest.approx(1 / 61)
    weighted = rrf_fuse([(["a"], 2.0), (["b"], 1.0)], k=0)
    assert weighted == {"a": 2.0, "b": 1.0}


def test_where_clause_quotes_values_and_rejects_unknown_fields() -> None:
    assert where_clause({"doc_id": "it's"}) == "doc_id IN ('it''s')"
    assert (
        where_clause({"doc_id": ["a", "b"], "chunk_index": 0})
        == "doc_id IN ('a', 'b') AND chunk_index IN (0)"
    )
    with pytest.raises(ValueError, match="cannot filter"):
        where_clause({"text; drop table": "x"})


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        RetrievalConfig(mode="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RetrievalConfig(top_k=0)
