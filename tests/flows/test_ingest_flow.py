"""The ingest flow as a real Prefect flow run against LanceDB, with a folder of bad inputs."""

import json
from pathlib import Path

import pytest

from flows.ingest import ingest_flow
from pipelines.settings import Settings
from pipelines.store import Store


@pytest.fixture()
def messy(tmp_path: Path) -> Path:
    (tmp_path / "good.md").write_text("# Good\n\nA perfectly fine document about gardening and tomatoes.")
    (tmp_path / "page.html").write_text("<title>Page</title><p>Another fine document.</p>")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (tmp_path / "huge.txt").write_text("big " * 2_000_000)  # 8 MB, over the 5 MB default
    (tmp_path / "records.jsonl").write_text(
        "\n".join(
            [
                json.dumps({"id": "r1", "title": "Record one", "text": "First record text."}),
                '{"id": "r2", "title": "broken',
                json.dumps({"id": "r1", "title": "Record one again", "text": "Duplicate id."}),
                json.dumps({"id": "r3", "title": "Record three", "text": "Third record text."}),
            ]
        )
        + "\n"
    )
    return tmp_path


def test_ingest_quarantines_bad_inputs_and_counts_add_up(messy: Path, settings: Settings) -> None:
    result = ingest_flow([str(messy)], "messy")
    assert result["inputs"] == 10
    assert result["inputs"] == result["documents"] + result["unchanged"] + result["quarantined"]
    assert result["documents"] == 4  # good.md, page.html, r1, r3
    assert result["quarantined"] == 6
    assert result["chunks"] >= 4
    assert result["flow_run_id"] != "local"

    store = Store(settings.lancedb_location)
    q = store.quarantine("messy").to_arrow().to_pylist()
    by_source = {r["source_uri"].rsplit("/", 1)[-1]: r["reason"] for r in q}
    assert "empty" in by_source["empty.txt"]
    assert "binary" in by_source["image.png"]
    assert "UTF-8" in by_source["latin1.txt"]
    assert "over the" in by_source["huge.txt"]
    assert "not valid JSON" in by_source["records.jsonl#L2"]
    assert "duplicate" in by_source["records.jsonl#L3"]
    assert all(r["raw"] is not None for r in q)

    # Every chunk points at a stored document.
    docs = set(store.documents("messy").to_arrow().column("id").to_pylist())
    assert set(store.chunks("messy").to_arrow().column("doc_id").to_pylist()) <= docs

    again = ingest_flow([str(messy)], "messy")
    assert (again["documents"], again["unchanged"], again["chunks"]) == (0, 4, 0)
    assert again["quarantined"] == 6
    assert len(store.quarantine("messy").to_arrow()) == len(q)  # re-quarantining does not duplicate


def test_changed_document_replaces_exactly_its_chunks(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "a.md").write_text("# A\n\n" + "apples are red. " * 200)
    (tmp_path / "b.md").write_text("# B\n\nbananas are yellow.")
    ingest_flow([str(tmp_path)], "changes")
    store = Store(settings.lancedb_location)
    before = store.chunks("changes").to_arrow().to_pylist()
    b_before = {c["id"] for c in before if c["title"] == "B"}

    (tmp_path / "a.md").write_text("# A\n\nnow about apricots only.")
    result = ingest_flow([str(tmp_path)], "changes")
    assert (result["documents"], result["unchanged"]) == (1, 1)
    after = store.chunks("changes").to_arrow().to_pylist()
    a_after = [c for c in after if c["title"] == "A"]
    assert len(a_after) == 1 and "apricots" in a_after[0]["text"]
    assert {c["id"] for c in after if c["title"] == "B"} == b_before
