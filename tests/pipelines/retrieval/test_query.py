import pytest

from pipelines.retrieval import RetrievalConfig, rrf_fuse, where_clause
from pipelines.retrieval.fusion import length_scale


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


def test_the_length_prior_discounts_the_places_of_a_long_document() -> None:
    counts = {"long": 64, "short": 1}
    rankings = [(["long#1", "short#0"], 1.0), (["short#1", "long#5"], 1.0)]
    plain = rrf_fuse(rankings, 60)
    assert plain["long#1"] > plain["short#0"] and plain["short#1"] > plain["long#5"]
    scale = length_scale(counts, 0.5)
    assert scale is not None and scale("long") == 8.0 and scale("short") == scale("unknown") == 1.0
    fused = rrf_fuse(rankings, 60, lambda chunk: scale(chunk.split("#")[0]))
    assert fused["short#0"] == pytest.approx(plain["short#0"])  # one chunk: its places stand
    # 64 chunks at prior 0.5: a first place counts as 8th, a second as 16th
    assert fused["long#1"] == pytest.approx(1 / (60 + 8))
    assert fused["long#5"] == pytest.approx(1 / (60 + 16))
    assert fused["short#0"] > fused["long#1"] > fused["long#5"]  # the long document goes below
    assert length_scale(counts, 0.0) is None
    assert length_scale(counts, 1.0)("long") == 64.0  # type: ignore[misc]


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        RetrievalConfig(mode="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RetrievalConfig(top_k=0)
    with pytest.raises(ValueError, match="length_prior"):
        RetrievalConfig(length_prior=-0.1)
    with pytest.raises(ValueError, match="length_prior"):
        RetrievalConfig(length_prior=1.5)
