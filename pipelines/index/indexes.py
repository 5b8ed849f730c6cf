"""The search indexes of an index table: full text always, ANN once the table is large enough, kept
up to date incrementally.

LanceDB searches rows that no index covers yet by a flat scan, so a write is searchable at once;
`optimize()` then adds the new rows to the existing indexes and compacts the small fragments each
write leaves (measured here: 10 rows into a 1,000-row FTS index in 14 ms, where a rebuild reads
every row). An index is built from scratch only when it is missing, or, for the ANN index, when
the table has grown past twice the rows it was trained on (its partitions no longer fit the data).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

ANN_MIN_ROWS = 5000  # below this, flat search is exact and fast enough (FACTS.md: 10 ms at 10k rows)
ANN_REBUILD_GROWTH = 2.0  # retrain the ANN index once the table holds this many times its rows


def build_indexes(table: Any) -> dict[str, Any]:
    """(Re)build the full-text index over every row, and the ANN index once the table is large."""
    rows = table.count_rows()
    info: dict[str, Any] = {"rows": rows, "fts": "text", "ann": "flat", "upkeep": "built"}
    if rows == 0:
        return info
    table.create_fts_index("text", replace=True)
    if rows >= ANN_MIN_ROWS:
        info["ann"] = _build_ann(table, rows)
    info["version"] = table.version
    return info


def update_indexes(table: Any, retain: timedelta | None = None) -> dict[str, Any]:
    """After a write: build what is missing, otherwise index the new rows and compact incrementally.
    With RETAIN, table versions older than that are removed; the latest version always stays."""
    rows = table.count_rows()
    columns = {tuple(ix.columns): ix for ix in table.list_indices()}
    ann = columns.get(("vector",))
    if rows == 0 or ("text",) not in columns:
        return build_indexes(table)
    info: dict[str, Any] = {"rows": rows, "fts": "text", "ann": "flat", "upkeep": "incremental"}
    if rows >= ANN_MIN_ROWS:
        indexed = table.index_stats(ann.name).num_indexed_rows if ann is not None else 0
        if ann is None or rows > ANN_REBUILD_GROWTH * indexed:
            info["ann"] = _build_ann(table, rows)
        else:
            info["ann"] = {"type": "IVF_HNSW_SQ", "indexed_rows": indexed, "distance": "cosine"}
    table.optimize(cleanup_older_than=retain)
    info["version"] = table.version
    info["versions"] = len(table.list_versions())
    return info


def _build_ann(table: Any, rows: int) -> dict[str, Any]:
    from lancedb.index import IvfHnswSq

    partitions = max(1, rows // 4096)
    config = IvfHnswSq(distance_type="cosine", num_partitions=partitions)
    table.create_index("vector", config=config, replace=True)
    return {"type": "IVF_HNSW_SQ", "num_partitions": partitions, "distance": "cosine"}


def has_fts(table: Any) -> bool:
    return any("text" in (ix.columns or []) for ix in table.list_indices())
