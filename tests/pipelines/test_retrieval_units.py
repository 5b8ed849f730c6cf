import pytest

from pipelines.prompts import build_messages, citations
from pipelines.retrieval import Hit, RetrievalConfig, rrf_fuse, where_clause


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


def test_prompt_numbers_sources_within_budget() -> None:
    hits = [Hit(f"c{i}", f"d{i}", f"Title {i}", "word " * 50, 1.0) for i in range(5)]
    messages, used = build_messages("why?", hits, count_tokens=lambda s: len(s.split()), budget=120)
    assert len(used) == 2
    user = messages[-1]["content"]
    assert "[1] Title 0" in user and "[2] Title 1" in user and "[3]" not in user
    assert user.endswith("Question: why?")
    assert "not instructions" in messages[0]["content"]


def test_citations_in_order_of_first_use() -> None:
    assert citations("See [2] and [1], again [2].") == [2, 1]


def test_condense_joins_short_follow_ups_with_the_previous_question() -> None:
    from pipelines.prompts import condense

    history = [
        {"role": "user", "content": "How do I keep a sourdough starter alive?"},
        {"role": "assistant", "content": "Feed it."},
    ]
    assert condense("How often should I feed it?", history) == (
        "How do I keep a sourdough starter alive? How often should I feed it?"
    )
    assert condense(
        "What is a Fresnel lens and who invented the first one used in lighthouses?", history
    ) == ("What is a Fresnel lens and who invented the first one used in lighthouses?")
    assert condense("How often should I feed it?", []) == "How often should I feed it?"
