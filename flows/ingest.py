"""Ingest: parse sources → documents contract → documents | quarantine → chunk → chunks contract."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from data_contracts import ContractResult, chunks_suite, documents_suite, validate
from pipelines import ingest as lib
from pipelines.chunking import Chunker, ChunkingConfig
from pipelines.embedding import resolve_embedding_model
from pipelines.settings import get_settings, validate_collection
from pipelines.sources import SourceBatch, read_sources
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
    flow_run_id: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@task(name="parse-sources", cache_policy=NO_CACHE)
def parse_sources(sources: list[str], fmt: str, max_bytes: int) -> SourceBatch:
    batch = read_sources(sources, fmt=fmt, max_bytes=max_bytes)  # type: ignore[arg-type]
    get_run_logger().info(
        "read %d inputs: %d parsed, %d rejected", batch.inputs, len(batch.documents), len(batch.rejected)
    )
    return batch


@task(name="validate-documents", cache_policy=NO_CACHE)
def validate_documents(batch: SourceBatch, max_chars: int) -> ContractResult:
    return validate(lib.documents_frame(batch.documents), documents_suite(max_chars))


@task(name="chunk-documents", cache_policy=NO_CACHE)
def chunk_documents(docs: pl.DataFrame, model_path: str | None, config: ChunkingConfig) -> ContractResult:
    chunks = Chunker(resolve_embedding_model(model_path), config).chunk(docs)
    return validate(chunks, chunks_suite(config.min_tokens, config.chunk_tokens, docs["id"].to_list()))


@task(name="write-collection", cache_policy=NO_CACHE)
def write_collection(
    collection: str, docs: pl.DataFrame, chunks: pl.DataFrame, quarantine: pl.DataFrame
) -> None:
    store = Store(get_settings().lancedb_location)
    lib.write_quarantine(store, collection, quarantine)
    lib.write_chunks(store, collection, docs["id"].to_list(), chunks)
    lib.write_documents(store, collection, docs)


@flow(name="ingest", log_prints=True)
def ingest_flow(sources: list[str], collection: str, format: str = "auto") -> dict[str, Any]:
    """Validated ingestion and chunking of SOURCES into COLLECTION; every input is accounted for."""
    settings = get_settings()
    validate_collection(collection)
    run_id = str(flow_run.id or "local")
    store = Store(settings.lancedb_location)

    batch = parse_sources(sources, format, settings.max_document_bytes)
    doc_check = validate_documents(batch, settings.max_document_bytes)
    changed, unchanged = lib.split_unchanged(store, collection, doc_check.valid)
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

    summary = IngestSummary(
        collection=collection,
        inputs=batch.inputs,
        documents=changed.height,
        unchanged=unchanged,
        quarantined=len(batch.rejected) + doc_check.rejected.height,
        chunks=chunk_check.valid.height,
        chunks_quarantined=chunk_check.rejected.height,
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
