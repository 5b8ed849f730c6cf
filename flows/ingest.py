"""Ingest: parse sources → documents contract → documents | quarantine → chunk → chunks contract.

A re-run costs what changed: files with the size and mtime of their last ingest are not read, and
documents whose content is stored already skip the contract, features and chunking."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from data_contracts import ContractResult, chunks_suite, documents_suite, validate
from flows.policy import INGEST_TIMEOUT_S, TRANSIENT_RETRIES
from pipelines.ids import document_id
from pipelines.index.embedding import resolve_embedding_model
from pipelines.ingest import tables as lib
from pipelines.ingest.chunking import Chunker, ChunkingConfig
from pipelines.ingest.features import add_document_features
from pipelines.ingest.sources import ReadOptions, SourceBatch, read_sources, source_root_uri
from pipelines.settings import get_settings, validate_collection
from pipelines.store import Store


@dataclass
class IngestSummary:
    collection: str
    inputs: int
    documents: int
    unchanged: int
    quarantined: int
    chunks: int
    chunks_quarantined: int
    pii_found: int
    near_duplicates: int
    pruned: int
    flow_run_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@task(name="parse-sources", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)
def parse_sources(sources: list[str], options: ReadOptions, known: dict[str, str]) -> SourceBatch:
    batch = read_sources(sources, options=options, known=known)
    get_run_logger().info(
        "read %d inputs: %d parsed, %d rejected, %d files unchanged (not read)",
        batch.inputs,
        len(batch.documents),
        len(batch.rejected),
        len(batch.unchanged),
    )
    return batch


@task(name="validate-documents", cache_policy=NO_CACHE)
def validate_documents(docs: pl.DataFrame, max_chars: int) -> ContractResult:
    return validate(docs, documents_suite(max_chars))


@task(name="document-features", cache_policy=NO_CACHE)
def document_features(docs: pl.DataFrame, redact_pii: bool) -> pl.DataFrame:
    return add_document_features(docs, redact_pii=redact_pii)


@task(name="chunk-documents", cache_policy=NO_CACHE)
def chunk_documents(docs: pl.DataFrame, model_path: str | None, config: ChunkingConfig) -> ContractResult:
    chunks = Chunker(resolve_embedding_model(model_path), config).chunk(docs)
    return validate(chunks, chunks_suite(config.min_tokens, config.chunk_tokens, docs["id"].to_list()))


@task(name="write-collection", cache_policy=NO_CACHE, **TRANSIENT_RETRIES)  # idempotent writes
def write_collection(
    collection: str, docs: pl.DataFrame, chunks: pl.DataFrame, quarantine: pl.DataFrame
) -> None:
    store = Store.from_settings(get_settings())
    lib.write_quarantine(store, collection, quarantine)
    lib.write_chunks(store, collection, docs["id"].to_list(), chunks)
    lib.write_documents(store, collection, docs)


@flow(name="ingest", log_prints=True, timeout_seconds=INGEST_TIMEOUT_S)
def ingest_flow(
    sources: list[str],
    collection: str,
    format: str = "auto",
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    fields: dict[str, str] | None = None,
    prune: bool = False,
) -> dict[str, Any]:
    """Validated ingestion and chunking of SOURCES into COLLECTION; every input is accounted for.

    include/exclude: globs for files in folders; fields: JSONL field names ({"text": "body"});
    prune: delete stored documents from these sources that are no longer there.
    """
    settings = get_settings()
    validate_collection(collection)
    run_id = str(flow_run.id or "local")
    store = Store.from_settings(settings)

    options = ReadOptions(
        fmt=format,  # type: ignore[arg-type]
        max_bytes=settings.max_document_bytes,
        include=tuple(include or ()),
        exclude=tuple(exclude or ()),
        fields=tuple(sorted((fields or {}).items())),
    )
    batch = parse_sources(sources, options, lib.source_stats(store, collection))
    changed, same = lib.split_unchanged(store, collection, lib.documents_frame(batch.documents))
    doc_check = validate_documents(changed, settings.max_document_bytes)
    # An id twice in this run was held back for the contract; the copy that passed may be stored.
    valid, same_too = lib.split_unchanged(store, collection, doc_check.valid)
    same = pl.concat([same, same_too])
    changed = document_features(valid, settings.redact_pii)
    cfg = ChunkingConfig(settings.chunk_tokens, settings.chunk_overlap, settings.min_chunk_tokens)
    chunk_check = chunk_documents(changed, settings.embedding_model, cfg)
    # A document whose chunks break the contract is kept, its bad chunks quarantined.
    quarantine = pl.concat(
        [
            lib.rejected_inputs_frame(batch.rejected, run_id),
            lib.quarantine_frame(doc_check.rejected, "documents", run_id),
            lib.quarantine_frame(chunk_check.rejected, "chunks", run_id),
        ]
    )
    write_collection(collection, changed, chunk_check.valid, quarantine)
    lib.record_stats(store, collection, same)
    pruned = 0
    if prune:
        seen = {d.id for d in batch.documents} | {document_id(uri) for uri in batch.unchanged}
        seen |= {r.input_id for r in batch.rejected if r.input_id}
        pruned = lib.prune_missing(store, collection, [source_root_uri(s) for s in sources], seen)

    summary = IngestSummary(
        collection=collection,
        inputs=batch.inputs,
        documents=changed.height,
        unchanged=len(batch.unchanged) + same.height,
        quarantined=len(batch.rejected) + doc_check.rejected.height,
        chunks=chunk_check.valid.height,
        chunks_quarantined=chunk_check.rejected.height,
        pii_found=int(changed["pii_found"].sum() or 0) if changed.height else 0,
        near_duplicates=int(changed["near_duplicate_of"].is_not_null().sum()) if changed.height else 0,
        pruned=pruned,
        flow_run_id=run_id,
    )
    assert summary.inputs == summary.documents + summary.unchanged + summary.quarantined, summary
    _report(summary, doc_check, chunk_check, quarantine)
    return summary.to_dict()


def _report(summary: IngestSummary, *checks: ContractResult | pl.DataFrame) -> None:
    *contracts, quarantine = checks
    rows = [
        {
            "suite": c.suite,
            "expectation": o.expectation,
            "column": o.column or "",
            "success": o.success,
            "unexpected": o.unexpected,
            "reason": o.reason,
            "examples": ", ".join(o.examples),
        }
        for c in contracts
        if isinstance(c, ContractResult)
        for o in c.outcomes
    ]
    if rows:
        create_table_artifact(
            rows,
            key=f"{summary.collection}-contracts",
            description="Great Expectations results of this ingest run",
        )
    assert isinstance(quarantine, pl.DataFrame)
    lines = [
        f"| {r['table']} | `{r['input_id'][:60]}` | {r['reason']} |"
        for r in quarantine.head(50).iter_rows(named=True)
    ]
    create_markdown_artifact(
        "\n".join(
            [
                f"# Ingest of `{summary.collection}`",
                f"inputs **{summary.inputs}** = documents **{summary.documents}**"
                f" + unchanged **{summary.unchanged}**"
                f" + quarantined **{summary.quarantined}**; chunks **{summary.chunks}**"
                f" (quarantined {summary.chunks_quarantined})",
                "",
                "| table | input | reason |",
                "|---|---|---|",
                *lines,
            ]
        ),
        key=f"{summary.collection}-ingest",
        description="Counts and quarantined inputs",
    )
