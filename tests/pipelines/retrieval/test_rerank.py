"""The reranking stage's mechanics on a real cross-encoder (MiniLM's weights with a fresh scoring
head: the order it gives means nothing, the way it is applied does; a trained one is tested in
tests/serving/test_finetune.py)."""

from __future__ import annotations

import pytest

from pipelines.models import ModelNotFoundError, default_embedding_model_path
from pipelines.retrieval.query import Hit
from pipelines.retrieval.rerank import Reranker


@pytest.fixture(scope="module")
def reranker() -> Reranker:
    return Reranker(default_embedding_model_path())


def _hits(n: int) -> list[Hit]:
    texts = ["tea is steamed", "flour and water", "a context manager", "lighthouse lamps", "pass is a no-op"]
    return [Hit(f"c{i}", f"d{i}", f"t{i}", texts[i % len(texts)], 1.0 - i / 10) for i in range(n)]


def test_the_first_depth_hits_are_reordered_by_the_cross_encoder(reranker: Reranker) -> None:
    hits = _hits(5)
    (out,) = reranker.rerank_many(["what does a with statement do?"], [hits], depth=3)
    head, tail = out[:3], out[3:]
    assert {h.id for h in head} == {"c0", "c1", "c2"} and [h.id for h in tail] == ["c3", "c4"]
    assert [h.score for h in head] == sorted((h.score for h in head), reverse=True)
    assert all(0.0 <= h.score <= 1.0 for h in head) and tail == hits[3:]  # past depth: untouched
    expected = reranker.model.predict([("what does a with statement do?", h.text) for h in hits[:3]])
    assert sorted(round(float(x), 6) for x in expected) == sorted(h.score for h in head)


def test_several_queries_share_one_pass_and_an_empty_ranking_stays_empty(reranker: Reranker) -> None:
    out = reranker.rerank_many(["q1", "q2"], [_hits(2), []], depth=10)
    assert len(out[0]) == 2 and out[1] == []
    assert reranker.rerank_many(["q"], [[]], depth=5) == [[]]


def test_a_missing_folder_is_one_clear_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ModelNotFoundError, match=r"no config\.json"):
        Reranker(tmp_path / "nothing")
