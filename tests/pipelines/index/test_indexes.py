"""The index table's search indexes: full text always, ANN once the table is large."""

from datetime import timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines.index.indexes import ANN_MIN_ROWS, build_indexes, update_indexes
from pipelines.schemas import index_schema
from pipelines.store import ModelInfo, Store


def _rows(n: int, dim: int = 16, start: int = 0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    ids = range(start, start + n)
    return pa.table(
        {
            "id": [f"r{i}" for i in ids],
            "doc_id": [f"d{i}" for i in ids],
            "title": ["t"] * n,
            "text": [f"row number {i} word{i % 97}" for i in ids],
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
    assert info["ann"]["type"] == "IVF_PQ" and info["ann"]["num_partitions"] >= 1
    indexed = {tuple(ix.columns) for ix in big.list_indices()}
    assert ("vector",) in indexed and ("text",) in indexed
    q = _rows(ANN_MIN_ROWS).column("vector")[7].values.to_numpy()
    hit = big.search(q, vector_column_name="vector").distance_type("cosine").limit(1).to_list()[0]
    assert hit["id"] == "r7"
    found = big.search("word42", query_type="fts").limit(100).to_list()
    expected = {f"r{i}" for i in range(ANN_MIN_ROWS) if i % 97 == 42}
    assert {h["id"] for h in found} == expected  # every row with the word, and only those
    assert all("word42" in h["text"].split() for h in found)


def test_new_rows_join_both_indexes_incrementally_and_old_versions_go(tmp_path: Path) -> None:
    store = Store(str(tmp_path))
    table = store.index_table("grow", ModelInfo("test-model", "0123456789abcdef", 16))
    Store.upsert(table, _rows(ANN_MIN_ROWS).cast(index_schema(16)))
    assert build_indexes(table)["ann"]["type"] == "IVF_PQ"
    new = _rows(50, start=ANN_MIN_ROWS, seed=1)
    for i in range(0, 50, 10):  # five small writes, as an embed run's batches make them
        table.add(new.slice(i, 10).cast(index_schema(16)))
    versions = len(table.list_versions())

    info = update_indexes(table)
    assert info["upkeep"] == "incremental" and info["ann"]["indexed_rows"] == ANN_MIN_ROWS
    for ix in table.list_indices():  # every row is in both indexes now, without a rebuild
        assert table.index_stats(ix.name).num_unindexed_rows == 0, ix
    # PQ codes are approximate: rescoring the candidates on the full vectors, as serving's queries
    # do, puts the exact match first
    query = new.column("vector")[3].values.to_numpy()
    hit = table.search(query).distance_type("cosine").nprobes(80).refine_factor(30).limit(1).to_list()
    assert hit[0]["id"] == f"r{ANN_MIN_ROWS + 3}"
    word = (ANN_MIN_ROWS + 3) % 97
    words = {f"r{ANN_MIN_ROWS + i}" for i in range(50) if (ANN_MIN_ROWS + i) % 97 == word}
    found = {h["id"] for h in table.search(f"word{word}", query_type="fts").limit(500).to_list()}
    assert f"r{ANN_MIN_ROWS + 3}" in words and words <= found

    # Retention: versions older than the window go; the latest stays readable.
    retained = update_indexes(table, retain=timedelta(microseconds=1))
    assert retained["versions"] < versions and table.count_rows() == ANN_MIN_ROWS + 50

    # A table that has outgrown its ANN index twice over gets a new one, trained on all rows.
    table.add(_rows(ANN_MIN_ROWS + 60, start=ANN_MIN_ROWS + 50, seed=2).cast(index_schema(16)))
    assert update_indexes(table)["ann"]["num_partitions"] == (2 * ANN_MIN_ROWS + 110) // 4096
