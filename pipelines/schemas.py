"""Arrow schemas of the tables a collection is made of."""

from __future__ import annotations

import pyarrow as pa

DOCUMENTS = pa.schema(
    [
        ("id", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("source_uri", pa.string()),
        ("mime_type", pa.string()),
        ("content_hash", pa.string()),
        ("metadata", pa.string()),  # JSON object
        ("ingested_at", pa.timestamp("us", tz="UTC")),
        # features (pipelines/ingest/features.py)
        ("char_count", pa.int32()),
        ("ascii_ratio", pa.float32()),
        ("script", pa.string()),
        ("pii_found", pa.int32()),
        ("pii_redacted", pa.bool_()),
        ("near_duplicate_of", pa.string()),
        # "<bytes>:<mtime_ns>" of the file it was read from (None for a JSONL line): a re-run skips
        # a file whose stat is unchanged without reading it (pipelines/ingest/sources.py)
        ("source_stat", pa.string()),
    ]
)

CHUNKS = pa.schema(
    [
        ("id", pa.string()),
        ("doc_id", pa.string()),
        ("doc_hash", pa.string()),
        ("title", pa.string()),
        ("text", pa.string()),
        ("chunk_index", pa.int32()),
        ("token_count", pa.int32()),
        ("char_count", pa.int32()),
        ("char_start", pa.int32()),
        ("source_uri", pa.string()),
        ("heading", pa.string()),  # the heading path above the chunk: "Guide > Install > Linux"
        ("page", pa.int32()),  # PDF page of the chunk's start (1-based), null elsewhere
    ]
)

QUARANTINE = pa.schema(
    [
        ("id", pa.string()),  # stable per (table, source, input): a re-run updates, never duplicates
        ("input_id", pa.string()),  # the document/chunk id when one could be derived, else the source
        ("table", pa.string()),  # which table's contract rejected it: documents | chunks | (parse)
        ("source_uri", pa.string()),
        ("reason", pa.string()),
        ("failed_expectations", pa.list_(pa.string())),
        ("raw", pa.string()),  # the input (truncated) so nothing is lost
        ("run_id", pa.string()),
        ("quarantined_at", pa.timestamp("us", tz="UTC")),
    ]
)


def index_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            ("id", pa.string()),
            ("doc_id", pa.string()),
            ("title", pa.string()),
            ("text", pa.string()),
            ("chunk_index", pa.int32()),
            ("source_uri", pa.string()),
            ("vector", pa.list_(pa.float32(), dim)),
        ]
    )
