"""BEIR-layout evaluation sets: reading, splitting, and the synthetic starter set."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from pipelines.evaluation import evalsets
from pipelines.evaluation.evalsets import BUNDLED, EvalSetError


def _load(path: Path) -> evalsets.EvalSet:
    return evalsets.build(path, *evalsets.read_raw(path))


def test_the_bundled_sample_set_reads_and_splits_without_overlap() -> None:
    full = _load(BUNDLED)
    assert full.summary()["queries"] == 43 and full.summary()["answerable"] == 40
    search, holdout = full.split("search"), full.split("holdout")
    s_ids, h_ids = set(search.queries["_id"]), set(holdout.queries["_id"])
    assert s_ids.isdisjoint(h_ids) and s_ids | h_ids == set(full.queries["_id"])
    assert 0.2 < len(h_ids) / len(full.queries) < 0.6
    assert set(full.split("holdout").queries["_id"]) == h_ids  # stable
    assert search.digest != holdout.digest != full.digest
    assert all(q in s_ids for q in search.qrels) and all(q in s_ids for q in search.answers)


def test_missing_files_and_bad_lines_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(EvalSetError, match=r"no queries\.jsonl"):
        evalsets.read_raw(tmp_path)
    (tmp_path / "queries.jsonl").write_text('{"_id": "q1", "text": "ok"}\nnot json\n')
    (tmp_path / "qrels").mkdir()
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(EvalSetError, match=r"queries.jsonl:2: not JSON"):
        evalsets.read_raw(tmp_path)


def test_starter_set_from_chunks_is_marked_synthetic_and_loads(tmp_path: Path) -> None:
    text = (
        "Lighthouse keepers trimmed the lamp wicks every evening before sunset. "
        "They logged the weather and every passing ship in a bound journal."
    )
    chunks = pl.DataFrame(
        {"id": ["c1", "c2"], "doc_id": ["d1", "d2"], "title": ["Keepers", "Other"], "text": [text, text]}
    )
    path = evalsets.starter_set(chunks, tmp_path / "starter", n=5)
    rows = [json.loads(line) for line in (path / "queries.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["metadata"]["synthetic"] for r in rows)
    assert any(r["text"].startswith("What does Keepers say about Lighthouse keepers") for r in rows)
    loaded = _load(path)
    assert loaded.summary()["synthetic"] == 2
    by_chunk = {r["metadata"]["chunk_id"]: loaded.qrels[r["_id"]] for r in rows}
    assert by_chunk == {"c1": {"d1": 1}, "c2": {"d2": 1}}  # the chunk's document is the relevant one


def test_reference_answers_may_list_several_accepted_answers(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    (tmp_path / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": q, "text": f"question {q}"}) + "\n" for q in ("q1", "q2", "q3", "q4"))
    )
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    rows = [
        {"_id": "q1", "answer": "one"},
        {"_id": "q2", "answer": ["two", " 2 ", ""]},
        {"_id": "q3", "answers": ["three", "III"]},
        {"_id": "q4", "answer": ""},
    ]
    (tmp_path / "answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _load(tmp_path).answers == {"q1": ["one"], "q2": ["two", "2"], "q3": ["three", "III"]}
