"""LanceDB store: tables, the collection registry, names, schema migration."""

from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.store import CollectionNotFoundError, ModelInfo, Store


def test_active_index_and_missing_collections(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    with pytest.raises(CollectionNotFoundError, match="ragline embed"):
        store.active_index("nothing")
    with pytest.raises(CollectionNotFoundError, match="ragline ingest"):
        store.table("nothing", "chunks")
    model = ModelInfo("m", "abcdef0123456789", 16)
    table = store.index_table("c1", model)
    store.set_active_index("c1", table.name, model)
    assert store.active_index("c1").name == "c1__index_m_abcdef01"
    assert store.model_of(table) == model
    assert "c1" in store.collections()
    store.chunks("c2")  # chunks only, never embedded: not offered for search
    assert "c2" in store.collections() and store.indexed_collections() == ["c1"]


def test_tables_from_an_older_schema_gain_the_new_columns(tmp_path: Path) -> None:
    from pipelines.schemas import CHUNKS

    store = Store(str(tmp_path))
    old = pa.schema([f for f in CHUNKS if f.name not in ("heading", "page")])
    store.db.create_table("legacy__chunks", schema=old)
    table = store.chunks("legacy")
    assert {"heading", "page"} <= set(table.schema.names)
    row = {f.name: None for f in CHUNKS} | {
        "id": "c1",
        "doc_id": "d1",
        "text": "t",
        "heading": "H",
        "page": 2,
    }
    Store.upsert(table, pa.Table.from_pylist([row], schema=CHUNKS))
    assert table.to_arrow().to_pylist()[0]["page"] == 2
