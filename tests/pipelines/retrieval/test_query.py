import math

import pytest

from pipelines.retrieval import RetrievalConfig, rrf_fuse, where_clause
from pipelines.retrieval.fusion import document_fuse, length_penalty


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


def test_document_fusion_counts_a_document_found_through_different_chunks_by_both() -> None:
    # "long" is first in each ranking through a different chunk; chunk-level RRF sees two
    # one-ranking chunks, document-level RRF one document found by both.
    vector = [("long#1", "long"), ("short#0", "short"), ("other#0", "other")]
    text = [("long#2", "long"), ("other#0", "other"), ("short#0", "short")]
    chunks = rrf_fuse([([c for c, _ in vector], 1.0), ([c for c, _ in text], 1.0)], k=60)
    assert chunks["long#1"] == chunks["long#2"] == pytest.approx(1 / 61)
    fused = document_fuse([(vector, 1.0), (text, 1.0)], k=60)
    assert fused["long#1"] == pytest.approx(2 / 61)  # the document's score, at its best chunk
    assert fused["long#2"] == pytest.approx(2 / 61)  # tied with the best: both come first
    assert fused["short#0"] == pytest.approx(1 / 62 + 1 / 63)
    assert max(fused, key=fused.get).startswith("long")


def test_the_length_prior_demotes_a_document_of_many_chunks() -> None:
    vector = [("long#1", "long"), ("short#0", "short")]
    text = [("short#0", "short"), ("long#5", "long")]
    counts = {"long": 60, "short": 1}
    plain = document_fuse([(vector, 1.0), (text, 1.0)], k=60)
    assert plain["long#1"] == pytest.approx(plain["short#0"])  # one first and one second place each
    fused = document_fuse([(vector, 1.0), (text, 1.0)], k=60, prior=0.02, chunks=counts)
    assert fused["short#0"] == pytest.approx(plain["short#0"])  # ln(1) = 0: no penalty
    assert fused["long#1"] == pytest.approx(plain["long#1"] - length_penalty(60, 0.02, 60))
    assert fused["short#0"] > fused["long#1"] > fused["long#5"]
    assert length_penalty(60, 0.02, 60) == pytest.approx(0.02 * math.log(60) / 61)
    assert length_penalty(1, 0.5, 60) == 0.0


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        RetrievalConfig(mode="magic")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RetrievalConfig(top_k=0)
    with pytest.raises(ValueError, match="fusion must be one of"):
        RetrievalConfig(fusion="pages")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="length_prior"):
        RetrievalConfig(length_prior=-0.1)
