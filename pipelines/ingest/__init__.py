"""Ingest: from sources to validated tables. Reads folders, JSONL and BEIR corpora (`sources`),
parses Markdown, HTML, text and PDF (`parsers`), computes document features with polars (`features`:
normalisation, PII redaction, scripts, near-duplicates), splits documents into chunks (`chunking`),
and writes documents, chunks and the quarantine of rejected rows to the collection's tables
(`tables`). The data contracts that decide what is rejected live in `data_contracts/`."""

from pipelines.ingest.chunking import Chunker, ChunkingConfig
from pipelines.ingest.sources import ParsedDocument, ReadOptions, RejectedInput, read_sources
from pipelines.ingest.tables import (
    documents_frame,
    prune_missing,
    quarantine_frame,
    rejected_inputs_frame,
    split_unchanged,
    write_chunks,
    write_documents,
    write_quarantine,
)

__all__ = [
    "Chunker",
    "ChunkingConfig",
    "ParsedDocument",
    "ReadOptions",
    "RejectedInput",
    "documents_frame",
    "prune_missing",
    "quarantine_frame",
    "read_sources",
    "rejected_inputs_frame",
    "split_unchanged",
    "write_chunks",
    "write_documents",
    "write_quarantine",
]
