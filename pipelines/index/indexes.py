"""The search indexes of an index table: full text always, ANN once the table is large enough."""

from __future__ import annotations

from typing import Any

ANN_MIN_ROWS = 5000  # below this, flat search is exact and fast enough (FACTS.md: 10 ms at 10k rows)


def build_indexes(table: Any) -> dict[str, Any]:
    """(Re)build the full-text index over every row, and the ANN index once the table is large.

    LanceDB's FTS index does not cover rows added after it was built, so it is rebuilt after
    each write; the ANN index is optimized incrementally by `optimize()`.
    """
    rows = table.count_rows()
    info: dict[str, Any] = {"rows": rows, "fts": "text", "ann": "flat"}
    if rows == 0:
        return info
    table.create_fts_index("text", replace=True)
    if rows >= ANN_MIN_ROWS:
        from lancedb.index import IvfHnswSq

        partitions = max(1, rows // 4096)
        table.create_index(
            "vector", config=IvfHnswSq(distance_type="cosine", num_partitions=partitions), replace=True
        )
        info["ann"] = {"type": "IVF_HNSW_SQ", "num_partitions": partitions, "distance": "cosine"}
    info["version"] = table.version
    return info
