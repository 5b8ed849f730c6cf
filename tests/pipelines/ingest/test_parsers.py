from pathlib import Path

import pytest

from pipelines.ingest.parsers import ParseError, decode_text, parse_html, parse_markdown, parse_plain
from pipelines.ingest.sources import read_sources


def test_html_keeps_title_and_text_and_drops_scripts_and_styles() -> None:
    title, text = parse_html(
        "<html><head><title> My  Page </title><style>p{}</style><script>alert(1)</script></head>"
        "<body><h1>Hello</h1><p>first &amp; second</p><script>evil()</script><p>third</p></body></html>",
        "fallback",
    )
    assert title == "My Page"
    assert "first & second" in text and "third" in text
    assert "alert" not in text and "evil" not in text and "p{}" not in text


def test_html_keeps_the_layout_of_pre_blocks_only() -> None:
    _, text = parse_html(
        "<body>\n    <p>Call it\n        like this:</p>\n"
        "    <pre><code>def area(r):\n    # a circle\n    return 3.14 * r * r\n</code></pre>\n</body>",
        "fallback",
    )
    # the page source's indentation goes; the code's stays (and its comment is no heading)
    assert text == "Call it\nlike this:\n\ndef area(r):\n    # a circle\n    return 3.14 * r * r"


def test_markdown_title_is_first_heading() -> None:
    assert parse_markdown("intro\n\n## Sub heading\n\ntext", "file")[0] == "Sub heading"
    assert parse_markdown("no heading here", "file")[0] == "file"


def test_plain_text_title_is_a_short_first_line() -> None:
    assert parse_plain("How tea is made\n\nGreen and black tea...", "file")[0] == "How tea is made"
    assert parse_plain("just one paragraph\nof text", "file")[0] == "file"


def test_binary_and_invalid_utf8_are_parse_errors() -> None:
    with pytest.raises(ParseError, match="binary"):
        decode_text(b"\x89PNG\x00\x00\x01")
    with pytest.raises(ParseError, match="UTF-8"):
        decode_text(b"caf\xe9 au lait")
    assert decode_text("\ufeffhé".encode()) == "hé"  # BOM stripped


def test_read_sources_accounts_for_every_input(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nalpha text")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "big.txt").write_text("x" * 200)
    (tmp_path / ".hidden.md").write_text("# hidden")
    (tmp_path / "data.jsonl").write_text(
        '{"id": "d1", "title": "T", "text": "one"}\nnot json\n\n[1, 2]\n{"id": "d2"}\n'
    )
    batch = read_sources([tmp_path], max_bytes=100)
    assert sorted(d.id for d in batch.documents if d.mime_type == "application/json") == ["d1"]
    reasons = sorted(r.reason.split(" ")[0] + ":" + r.source_uri.rsplit("/", 1)[-1] for r in batch.rejected)
    assert len(batch.rejected) == 5, reasons  # binary, too big, broken line, non-object, no text
    assert any("over the 100-byte limit" in r.reason for r in batch.rejected)
    assert any("not valid JSON" in r.reason for r in batch.rejected)
    assert batch.inputs == 7  # hidden file and blank line are not inputs
    assert all(r.raw is not None for r in batch.rejected)


def test_document_ids_are_stable(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# A\n\nalpha")
    first = read_sources([tmp_path]).documents[0].id
    (tmp_path / "a.md").write_text("# A\n\nchanged text")
    assert read_sources([tmp_path]).documents[0].id == first
