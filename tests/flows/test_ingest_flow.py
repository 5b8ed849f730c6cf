"""The ingest flow as a real Prefect flow run against LanceDB, with a folder of bad inputs."""

import json
import os
from pathlib import Path

import pytest

from flows.ingest import ingest_flow
from pipelines.ingest import tables as lib
from pipelines.ingest.sources import read_sources
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


def test_prune_removes_documents_gone_from_the_source(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "a.md").write_text("# A\n\nalpha is here")
    (tmp_path / "b.md").write_text("# B\n\nbeta is here")
    ingest_flow([str(tmp_path)], "pruning")
    (tmp_path / "b.md").unlink()
    store = Store(settings.lancedb_location)
    assert ingest_flow([str(tmp_path)], "pruning")["pruned"] == 0  # without --prune nothing is deleted
    assert store.documents("pruning").count_rows() == 2
    result = ingest_flow([str(tmp_path)], "pruning", prune=True)
    assert (result["pruned"], result["unchanged"]) == (1, 1)
    assert {d["title"] for d in store.documents("pruning").to_arrow().to_pylist()} == {"A"}
    assert {c["title"] for c in store.chunks("pruning").to_arrow().to_pylist()} == {"A"}


def test_features_are_counted_and_stored(tmp_path: Path, settings: Settings) -> None:
    text = " ".join(f"Sentence {i} about the annual report of the regional water board." for i in range(30))
    (tmp_path / "one.txt").write_text(text)
    (tmp_path / "copy.txt").write_text(text + " One more line.")
    (tmp_path / "contact.md").write_text("# Contact\n\nMail help@example.org or call 555-123-4567.")
    result = ingest_flow([str(tmp_path)], "features")
    assert result["pii_found"] == 2 and result["near_duplicates"] == 1
    docs = {
        d["title"]: d for d in Store(settings.lancedb_location).documents("features").to_arrow().to_pylist()
    }
    assert docs["Contact"]["pii_found"] == 2 and docs["Contact"]["script"] == "latin"
    assert "help@example.org" in docs["Contact"]["text"]  # redaction is off by default


def test_flow_run_carries_the_validation_artifacts(messy: Path) -> None:
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    result = ingest_flow([str(messy)], "artifacts")
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[UUID(result["flow_run_id"])])
            )
        )
    by_type = {a.type: a for a in artifacts}
    assert {"table", "markdown"} <= set(by_type)
    table = by_type["table"].data
    assert "expect_column_values_to_be_unique" in str(table) and "duplicate document id" in str(table)
    assert "quarantined **6**" in by_type["markdown"].data


def test_corrupt_pdfs_are_quarantined_and_the_rest_is_ingested(tmp_path: Path, settings: Settings) -> None:
    from tests.pdf_writer import make_pdf

    good = make_pdf(["Pumps move water with an impeller."], "Pump Manual")
    (tmp_path / "manual.pdf").write_bytes(good)
    (tmp_path / "truncated.pdf").write_bytes(good[: len(good) // 2])  # a download cut short
    (tmp_path / "garbage.pdf").write_bytes(b"%PDF-1.7\n" + bytes(range(256)) * 4)
    (tmp_path / "notes.md").write_text("# Notes\n\nValves open and close.")
    result = ingest_flow([str(tmp_path)], "pdfs")
    assert (result["inputs"], result["documents"], result["quarantined"]) == (4, 2, 2)

    store = Store(settings.lancedb_location)
    quarantined = {
        r["source_uri"].rsplit("/", 1)[-1]: r for r in store.quarantine("pdfs").to_arrow().to_pylist()
    }
    assert set(quarantined) == {"truncated.pdf", "garbage.pdf"}
    assert all(
        "corrupt or unreadable PDF" in r["reason"] and r["raw"] is not None for r in quarantined.values()
    )
    titles = set(store.documents("pdfs").to_arrow().column("title").to_pylist())
    assert titles == {"Pump Manual", "Notes"}


def test_a_rerun_reads_only_the_files_that_changed(tmp_path: Path, settings: Settings) -> None:
    files = {name: tmp_path / f"{name}.md" for name in ("a", "b", "c")}
    for name, path in files.items():
        path.write_text(f"# {name.upper()}\n\nthe document called {name}.")
    ingest_flow([str(tmp_path)], "stats")
    store = Store(settings.lancedb_location)
    known = lib.source_stats(store, "stats")
    assert len(known) == 3
    batch = read_sources([tmp_path], known=known)
    assert (len(batch.unchanged), batch.documents, batch.inputs) == (3, [], 3)  # nothing read

    st = files["a"].stat()
    os.utime(files["a"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same content
    files["b"].write_text("# B\n\nthe document called b, edited.")
    result = ingest_flow([str(tmp_path)], "stats")
    assert (result["inputs"], result["documents"], result["unchanged"]) == (3, 1, 2)
    assert {d["title"]: d["text"] for d in store.documents("stats").to_arrow().to_pylist()}["B"].endswith(
        "edited."
    )
    # The touched file's new stat is recorded: the next run reads no file at all.
    again = read_sources([tmp_path], known=lib.source_stats(store, "stats"))
    assert (len(again.unchanged), again.documents) == (3, [])
