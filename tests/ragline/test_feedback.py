"""`ragline feedback export`'s rules on rows as `SessionStore.rated_answers` returns them: every
rating is exported or skipped with its reason, and a thumbs-down counts against what it cited (the
export from a running app is tested in tests/serving/test_finetune.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ragline.feedback import direction, export

CHUNKS = {
    "c1": {"doc_id": "d1", "title": "With", "text": "The with statement wraps a block."},
    "c2": {"doc_id": "d2", "title": "Pass", "text": "pass does nothing."},
}


def _row(message_id: str, rating: int, **meta: Any) -> dict[str, Any]:
    base = {"collection": "x", "question": f"question {message_id}?", "cited": ["c1"]}
    return {
        "feedback_id": f"f{message_id}",
        "message_id": message_id,
        "rating": rating,
        "comment": "",
        "rated_at": "2026-12-04",
        "answer": f"answer {message_id} [1].",
        "meta": {**base, **meta},
    }


def test_every_rating_is_exported_or_skipped_with_its_reason(tmp_path: Path) -> None:
    rated = [
        _row("m1", 1),
        _row("m2", -1, cited=["c2"]),
        _row("m3", 1, collection="other"),
        _row("m4", 1, collection=None),
        _row("m5", 3),
        _row("m6", 1, cited=["gone"]),
        _row("m7", 5, question=""),
        _row("m8", -1),
        _row("m8", 1),  # the latest rating of an answer stands
    ]
    counts = export(rated, CHUNKS, "x", tmp_path)
    assert counts["exported"] == 3 and (counts["up"], counts["down"]) == (2, 1)
    assert counts["skipped"] == {
        "another collection": 1,
        "no collection recorded": 1,
        "neutral rating": 1,
        "no cited passage still in the collection": 1,
        "no question recorded": 1,
        "an earlier rating of the same answer": 1,
    }
    qrels = (tmp_path / "qrels" / "test.tsv").read_text().splitlines()
    assert qrels == ["query-id\tcorpus-id\tscore", "fb-m1\td1\t1", "fb-m2\td2\t0", "fb-m8\td1\t1"]
    answers = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [a["_id"] for a in answers] == ["fb-m1", "fb-m8"]  # rated up: accepted answers
    ratings = [json.loads(x) for x in (tmp_path / "ratings.jsonl").read_text().splitlines()]
    assert ratings[1]["passages"] == [{"chunk_id": "c2", **CHUNKS["c2"]}] and ratings[1]["rating"] == -1
    assert "3 rated answers" in (tmp_path / "README.md").read_text()


def test_thumbs_and_stars_read_as_up_down_or_neutral() -> None:
    assert [direction(r) for r in (-1, 1, 2, 3, 4, 5)] == [-1, 1, -1, 0, 1, 1]
