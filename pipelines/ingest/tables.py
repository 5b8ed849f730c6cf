"""Ingestion on the storage side: documents as a frame, what changed, and the writes.

Write order makes a crash at any point safe to re-run: a changed document's old chunks are
replaced first and its new hash is recorded last, so an interrupted document is seen as changed
again next time and its chunks are rewritten (chunk ids are stable, writes are upserts).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from pipelines import schemas
from pipelines.ids import content_hash
from pipelines.ingest.sources import ParsedDocument, RejectedInput
from pipelines.store import Store, sql_in

RAW_KEEP = 2000


def documents_frame(docs: list[ParsedDocument]) -> pl.DataFrame:
    now = datetime.now(UTC)
    rows = [
        {
            "id": d.id,
            "title": d.title,
            "text": d.text,
            "source_uri": d.source_uri,
            "mime_type": d.mime_type,
            "content_hash": content_hash(f"{d.title}\x00{d.text}"),
            "metadata": json.dumps(d.metadata, default=str),
            "ingested_at": now,
            "source_stat": d.source_stat,
        }
        for d in docs
    ]
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schemas.DOCUMENTS))  # type: ignore[return-value]


def source_stats(store: Store, collection: str) -> dict[str, str]:
    """Source URI -> `source_stat` of the stored documents read from files (for `read_sources`)."""
    if not store.has(collection, "documents"):
        return {}
    stored = Store.read_columns(store.documents(collection), ["source_uri", "source_stat"])
    stored = stored.filter(pc.is_valid(stored["source_stat"]))
    return dict(zip(stored["source_uri"].to_pylist(), stored["source_stat"].to_pylist(), strict=True))


def split_unchanged(store: Store, collection: str, docs: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(documents that are new or changed, those whose content is stored already) against what is
    stored. An id that occurs twice in this run always counts as changed, so the contract sees
    the duplicate."""
    if docs.is_empty() or not store.has(collection, "documents"):
        return docs, docs.clear()
    stored = pl.from_arrow(Store.read_columns(store.documents(collection), ["id", "content_hash"]))
    single = docs.filter(~pl.col("id").is_duplicated())
    known = single.join(stored, on=["id", "content_hash"], how="semi")  # type: ignore[arg-type]
    return docs.join(known.select("id"), on="id", how="anti"), known


def record_stats(store: Store, collection: str, docs: pl.DataFrame) -> None:
    """A file touched but not changed (a checkout, a copy) records its new stat, so the next run
    skips it unread; the rest of its row stays."""
    touched = docs.filter(pl.col("source_stat").is_not_null()).select(["id", "source_stat"])
    if touched.height:
        store.documents(collection).merge_insert("id").when_matched_update_all().execute(touched.to_arrow())


def write_chunks(store: Store, collection: str, doc_ids: list[str], chunks: pl.DataFrame) -> None:
    table = store.chunks(collection)
    for i in range(0, len(doc_ids), 500):
        table.delete(sql_in("doc_id", doc_ids[i : i + 500]))
    Store.upsert(table, chunks.to_arrow().select(schemas.CHUNKS.names).cast(schemas.CHUNKS))


def write_documents(store: Store, collection: str, docs: pl.DataFrame) -> None:
    Store.upsert(
        store.documents(collection), docs.to_arrow().select(schemas.DOCUMENTS.names).cast(schemas.DOCUMENTS)
    )


def quarantine_frame(rejected: pl.DataFrame, table: str, run_id: str) -> pl.DataFrame:
    """Rows rejected by a contract (with `reason`, `failed_expectations`) as quarantine rows."""
    now = datetime.now(UTC)
    rows = []
    for r in rejected.iter_rows(named=True):
        raw = {k: v for k, v in r.items() if k not in ("reason", "failed_expectations")}
        rows.append(
            _qrow(
                table,
                r.get("source_uri") or "",
                r.get("id") or r.get("doc_id"),
                r["reason"],
                r["failed_expectations"],
                json.dumps(raw, default=str),
                run_id,
                now,
            )
        )
    return _qframe(rows)


def rejected_inputs_frame(rejected: list[RejectedInput], run_id: str) -> pl.DataFrame:
    now = datetime.now(UTC)
    return _qframe(
        [_qrow("parse", r.source_uri, r.input_id, r.reason, ["parse"], r.raw, run_id, now) for r in rejected]
    )


def write_quarantine(store: Store, collection: str, rows: pl.DataFrame) -> None:
    if not rows.is_empty():
        Store.upsert(store.quarantine(collection), rows.to_arrow().cast(schemas.QUARANTINE))


def _qrow(
    table: str,
    source_uri: str,
    input_id: str | None,
    reason: str,
    failed: list[str],
    raw: str,
    run_id: str,
    now: datetime,
) -> dict[str, object]:
    key = hashlib.sha1(f"{table}\x00{source_uri}\x00{input_id}".encode()).hexdigest()[:20]
    return {
        "id": key,
        "input_id": input_id or source_uri,
        "table": table,
        "source_uri": source_uri,
        "reason": reason,
        "failed_expectations": failed,
        "raw": raw[:RAW_KEEP],
        "run_id": run_id,
        "quarantined_at": now,
    }


def _qframe(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.from_arrow(pa.Table.from_pylist(rows, schema=schemas.QUARANTINE))  # type: ignore[return-value]


def prune_missing(store: Store, collection: str, roots: list[str], seen: set[str]) -> int:
    """Delete stored documents (and their chunks) that came from ROOTS but were not seen this run.

    Their vectors go at the next embed run, which drops vectors of chunks that no longer exist.
    """
    if not store.has(collection, "documents"):
        return 0
    stored = pl.from_arrow(Store.read_columns(store.documents(collection), ["id", "source_uri"]))
    assert isinstance(stored, pl.DataFrame)
    under = (
        pl.any_horizontal([pl.col("source_uri").str.starts_with(r) for r in roots])
        if roots
        else pl.lit(False)
    )
    gone = stored.filter(under & ~pl.col("id").is_in(list(seen)))["id"].to_list()
    for i in range(0, len(gone), 500):
        batch = gone[i : i + 500]
        store.chunks(collection).delete(sql_in("doc_id", batch))
        store.documents(collection).delete(sql_in("id", batch))
    return len(gone)
