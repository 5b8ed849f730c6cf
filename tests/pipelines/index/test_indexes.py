"""The index table's search indexes: full text always, ANN once the table is large."""

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.index.indexes import ANN_MIN_ROWS, build_indexes
from pipelines.schemas import index_schema
from pipelines.store import ModelInfo, Store


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
    found = big.search("word42", query_type="fts").limit(100).to_list()
    expected = {f"r{i}" for i in range(ANN_MIN_ROWS) if i % 97 == 42}
    assert {h["id"] for h in found} == expected  # every row with the word, and only those
    assert all("word42" in h["text"].split() for h in found)
