"""Real Great Expectations suites against small frames with known defects."""

import polars as pl

from data_contracts import chunks_suite, documents_suite, validate
from pipelines.ingest.sources import ParsedDocument
from pipelines.ingest.tables import documents_frame


def _doc(i: str, text: str, mime: str = "text/markdown") -> ParsedDocument:
    return ParsedDocument(i, f"title {i}", text, f"file:///{i}", mime)


def test_documents_contract_quarantines_each_bad_row_with_its_reason() -> None:
    docs = documents_frame(
        [
            _doc("ok", "fine text"),
            _doc("empty", ""),
            _doc("ctrl", "bell \x07 inside"),
            _doc("dup", "first"),
            _doc("dup", "second"),
            _doc("huge", "x" * 500),
            _doc("png", "text", mime="image/png"),
        ]
    )
    result = validate(docs, documents_suite(max_chars=100))
    assert result.evaluated == 6  # every declared expectation ran
    assert sorted(result.valid["id"].to_list()) == ["dup", "ok"]
    assert result.valid.filter(pl.col("id") == "dup")["text"][0] == "first"  # first occurrence kept
    reasons = dict(zip(result.rejected["id"], result.rejected["reason"], strict=True))
    assert set(reasons) == {"empty", "ctrl", "dup", "huge", "png"}
    assert "empty" in reasons["empty"]
    assert "control characters" in reasons["ctrl"]
    assert "duplicate" in reasons["dup"]
    assert "longer than 100" in reasons["huge"]
    assert "mime type" in reasons["png"]
    assert result.valid.height + result.rejected.height == docs.height  # nothing lost
    failed = {o.expectation for o in result.outcomes if not o.success}
    assert "expect_column_values_to_be_unique" in failed


def test_chunks_contract_checks_token_window_and_parent_document() -> None:
    chunks = pl.DataFrame(
        {
            "id": ["c1", "c2", "c3"],
            "doc_id": ["d1", "d1", "ghost"],
            "text": ["a", "b", "c"],
            "token_count": [10, 500, 10],
        }
    )
    result = validate(chunks, chunks_suite(1, 200, ["d1"]))
    assert result.valid["id"].to_list() == ["c1"]
    reasons = dict(zip(result.rejected["id"], result.rejected["reason"], strict=True))
    assert "more than 200 tokens" in reasons["c2"]
    assert "document does not exist" in reasons["c3"]


def test_empty_frame_is_valid_and_evaluates_nothing_to_fail() -> None:
    result = validate(documents_frame([]), documents_suite(100))
    assert result.success and result.valid.is_empty()
