"""LanceDB store: index building by size, collection registry, names."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from pipelines.index.indexes import ANN_MIN_ROWS, build_indexes
from pipelines.schemas import index_schema
from pipelines.store import CollectionNotFoundError, ModelInfo, Store


def _rows(n: int, dim: int = 16) -> pa.Table:
    rng = np.random.default_rng(0)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "doc_id": [f"d{i}" for i in range(n)],
            "title": ["t"] * n,
            "text": [f"row number {i} word{i % 97}" for i in range(n)],
            "chunk_index": pa.array([0] * n, pa.int32()),
            "source_uri": ["u"] * n,
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dim),
        }
    )


def test_large_tables_get_an_ann_index_small_ones_stay_flat(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    model = ModelInfo("test-model", "0123456789abcdef", 16)
    small = store.index_table("small", model)
    Store.upsert(small, _rows(100).cast(index_schema(16)))
    assert build_indexes(small)["ann"] == "flat"

    big = store.index_table("big", model)
    Store.upsert(big, _rows(ANN_MIN_ROWS).cast(index_schema(16)))
    info = build_indexes(big)
    assert info["ann"]["type"] == "IVF_HNSW_SQ" and info["ann"]["num_partitions"] >= 1
    indexed = {tuple(ix.columns) for ix in big.list_indices()}
    assert ("vector",) in indexed and ("text",) in indexed
    q = _rows(ANN_MIN_ROWS).column("vector")[7].values.to_numpy()
    hit = big.search(q, vector_column_name="vector").distance_type("cosine").limit(1).to_list()[0]
    assert hit["id"] == "r7"
    assert big.search("word42", query_type="fts").limit(3).to_list()


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
