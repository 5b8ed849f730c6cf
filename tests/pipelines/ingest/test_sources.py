"""PDF, folder globs, JSONL field mapping, heading paths and page numbers."""

from pathlib import Path

import polars as pl

from pipelines.ingest.chunking import Chunker, ChunkingConfig
from pipelines.ingest.parsers import parse_html
from pipelines.ingest.sources import ReadOptions, file_uri, read_sources
from pipelines.ingest.tables import documents_frame
from pipelines.models import default_embedding_model_path
from tests.pdf_writer import make_pdf


def test_pdf_text_layer_pages_and_title(tmp_path: Path) -> None:
    (tmp_path / "manual.pdf").write_bytes(
        make_pdf(["Page one talks about pumps.", "Page two: valves."], "Pump Manual")
    )
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    (tmp_path / "scan.pdf").write_bytes(make_pdf(["", ""]))
    batch = read_sources([tmp_path])
    (doc,) = batch.documents
    assert doc.title == "Pump Manual" and doc.metadata["pages"] == 2 and doc.mime_type == "application/pdf"
    assert doc.text == "Page one talks about pumps.\fPage two: valves."
    reasons = {r.source_uri.rsplit("/", 1)[-1]: r.reason for r in batch.rejected}
    assert "corrupt or unreadable PDF" in reasons["broken.pdf"] or "no text layer" in reasons["broken.pdf"]
    assert "no text layer" in reasons["scan.pdf"]


def test_chunks_carry_page_and_heading_path() -> None:
    chunker = Chunker(default_embedding_model_path(), ChunkingConfig(chunk_tokens=40, overlap=4))
    pdf_text = "\f".join(f"page {p} " + "filler words here " * 12 for p in range(1, 4))
    md = (
        "# Guide\n\nIntro.\n\n## Install\n\n"
        + "setup steps " * 30
        + "\n\n### Linux\n\nUse apt.\n\n## Usage\n\nRun it."
    )
    docs = pl.DataFrame(
        {
            "id": ["pdf", "md"],
            "title": ["p", "m"],
            "text": [pdf_text, md],
            "content_hash": ["h1", "h2"],
            "source_uri": ["u", "u"],
        }
    )
    chunks = chunker.chunk(docs)
    pages = chunks.filter(pl.col("doc_id") == "pdf")["page"].to_list()
    assert pages[0] == 1 and pages[-1] == 3 and pages == sorted(pages)
    assert "\f" not in "".join(chunks["text"])
    md_chunks = chunks.filter(pl.col("doc_id") == "md")
    assert md_chunks["page"].is_null().all()
    headings = md_chunks["heading"].to_list()
    assert headings[0] == "Guide"
    assert "Guide > Install" in headings
    last = md_chunks.filter(pl.col("text").str.contains("Run it"))["heading"].to_list()[-1]
    assert last in ("Guide > Install > Linux", "Guide > Usage")  # Linux is dropped once Usage starts
    assert not any("Linux" in h and "Usage" in h for h in headings)


def test_html_headings_become_heading_markers() -> None:
    _, text = parse_html("<h1>Top</h1><p>a</p><h2>Sub</h2><p>b</p>", "f")
    assert "# Top" in text and "## Sub" in text


def test_include_exclude_globs(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\nalpha")
    (tmp_path / "docs" / "b.txt").write_text("beta")
    (tmp_path / "docs" / "draft.md").write_text("# Draft\n\nwip")
    opts = ReadOptions(include=("*.md",), exclude=("draft*",))
    assert [d.title for d in read_sources([tmp_path], options=opts).documents] == ["A"]


def test_a_folder_is_read_in_path_order_without_hidden_files_and_uris_match_pathlib(tmp_path: Path) -> None:
    names = ["b/z.md", "a b/ü 100%.md", "a-c.md", "a/x.md", ".git/config", "a/.hidden.md"]
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(f"# {name}\n\ntext of {name}")
    (tmp_path / "link").symlink_to(tmp_path / "b")  # a symlinked folder is not followed
    docs = read_sources([tmp_path]).documents
    expected = sorted((tmp_path / n for n in names[:4]), key=lambda p: p.parts)  # what rglob + sort gave
    assert [d.source_uri for d in docs] == [p.as_uri() for p in expected]
    assert all(file_uri(str(p)) == p.as_uri() for p in expected)


def test_jsonl_field_mapping(tmp_path: Path) -> None:
    (tmp_path / "x.jsonl").write_text(
        '{"uuid": "u1", "headline": "Hello", "body": "World text", "tag": "t"}\n'
    )
    opts = ReadOptions(fields=(("id", "uuid"), ("text", "body"), ("title", "headline")))
    (doc,) = read_sources([tmp_path / "x.jsonl"], options=opts).documents
    assert (doc.id, doc.title, doc.text, doc.metadata["tag"]) == ("u1", "Hello", "World text", "t")
    assert "body" not in doc.metadata


def test_documents_frame_has_feature_columns_ready() -> None:
    frame = documents_frame([])
    assert {"pii_found", "near_duplicate_of", "script"} <= set(frame.columns)
