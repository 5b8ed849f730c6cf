"""Training pairs for the embedder: where each comes from, that the held-out split never trains,
and that a hard negative always comes from another document (the fine-tuning itself runs in
tests/serving/test_finetune.py)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.evaluation.evalsets import EvalSet
from pipelines.optimization.pairs import (
    Pair,
    TrainingPairs,
    build_pairs,
    feedback_pairs,
    mine_negatives,
    qrels_pairs,
    synthetic_pairs,
)
from pipelines.optimization.search import Candidate, TunedEmbedder
from pipelines.optimization.variants import Chunking
from pipelines.retrieval import RetrievalConfig

STARTER = (
    "A sourdough starter is flour and water fermented by wild yeast and bacteria. "
    "Feed the starter every day with equal weights of flour and water. "
    "A ripe starter doubles in size within a few hours of its feeding."
)
CHUNKS = pl.DataFrame(
    {
        "id": ["d1#0", "d1#1", "d2#0", "d3#0"],
        "doc_id": ["d1", "d1", "d2", "d3"],
        "title": [
            "Keeping a sourdough starter",
            "Keeping a sourdough starter",
            "tea.txt",
            "The with statement",
        ],
        "chunk_index": [0, 1, 0, 0],
        "text": [
            STARTER,
            "Bake with the starter at its peak, when it smells sweet and sour.",
            "Green tea is steamed or pan-fired soon after picking to stop oxidation.",
            "The with statement wraps a block in a context manager whose exit method always runs.",
        ],
    }
)


def _evalset(which: str) -> EvalSet:
    queries = pl.DataFrame(
        {
            "_id": ["q1", "q2"],
            "text": ["When is a starter ready to bake?", "Why steam tea?"],
            "synthetic": False,
        }
    )
    return EvalSet(f"set:{which}", Path("."), queries, {"q1": {"d1": 1}, "q2": {"d2": 1}})


def test_qrels_pairs_take_the_closest_chunk_and_never_the_held_out_split(embedder) -> None:  # type: ignore[no-untyped-def]
    pairs = qrels_pairs(_evalset("search"), CHUNKS, embedder)
    assert [(p.anchor, p.doc_id, p.source) for p in pairs] == [
        ("When is a starter ready to bake?", "d1", "qrels"),
        ("Why steam tea?", "d2", "qrels"),
    ]
    assert pairs[0].positive.startswith("Bake with the starter")  # d1's chunk that answers it
    with pytest.raises(ValueError, match="held-out"):
        qrels_pairs(_evalset("holdout"), CHUNKS, embedder)


def test_feedback_pairs_come_from_rated_up_answers_only() -> None:
    cited = [{"doc_id": "d3", "text": "The with statement wraps a block."}]
    rated = [
        {"question": "What does with do?", "rating": 1, "passages": cited},
        {"question": "What is tea?", "rating": -1, "passages": [{"doc_id": "d2", "text": "Green tea"}]},
    ]
    assert feedback_pairs(rated) == [Pair("What does with do?", cited[0]["text"], "feedback", "d3")]


def test_synthetic_pairs_use_titles_that_are_phrases_and_sentences_of_long_chunks() -> None:
    pairs = synthetic_pairs(CHUNKS, limit=10)
    titles = [p for p in pairs if p.anchor in set(CHUNKS["title"])]
    assert {p.anchor for p in titles} == {"Keeping a sourdough starter", "The with statement"}  # not tea.txt
    cloze = [p for p in pairs if p not in titles]
    assert len(cloze) == 1 and cloze[0].doc_id == "d1"  # the one chunk with three sentences
    assert cloze[0].anchor in STARTER and cloze[0].anchor not in cloze[0].positive
    assert len(synthetic_pairs(CHUNKS, limit=1)) == 1 and synthetic_pairs(CHUNKS, limit=0) == []


def test_a_hard_negative_is_the_closest_chunk_of_another_document(embedder) -> None:  # type: ignore[no-untyped-def]
    texts = CHUNKS["text"].to_list()
    vectors = embedder.embed(texts)
    pair = Pair("How do I feed a sourdough starter?", texts[0], "synthetic", "d1")
    (mined,) = mine_negatives([pair], embedder, vectors, texts, CHUNKS["doc_id"].to_list())
    assert mined.negative is not None and mined.negative not in texts[:2]  # never d1's own chunks

    index = CHUNKS.with_columns(vector=pl.Series([v.tolist() for v in vectors]))
    built = build_pairs(CHUNKS, embedder, index, search_set=_evalset("search"), synthetic=10)
    counts = built.counts()
    assert counts["qrels"] == 2 and counts["feedback"] == 0 and counts["synthetic"] == 3
    assert counts["with_negative"] == counts["total"] == 5
    assert set(built.columns()) == {"anchor", "positive", "negative"}
    assert TrainingPairs([pair]).columns() == {"anchor": [pair.anchor], "positive": [pair.positive]}


def test_a_candidate_with_a_tuned_embedder_round_trips() -> None:
    tuned = TunedEmbedder("/models/x", "x-embedder-1", "abc", "x__index_x_embedder_1_abc")
    c = Candidate(Chunking(200, 32), RetrievalConfig(), tuned)
    assert Candidate.from_dict(c.to_dict()) == c and c.params()["embedder"] == "x-embedder-1"
    assert Candidate.from_dict({**c.to_dict(), "embedder": None}).embedder is None
    legacy = {"chunking": {"tokens": 200, "overlap": 32}, "retrieval": {"mode": "text"}}
    assert Candidate.from_dict(legacy).embedder is None  # champions from before fine-tuning
