"""Chunking variants of a collection, for the optimizer: the parent's documents chunked another way,
kept as a collection of their own (`<collection>-c<tokens>o<overlap>`) with its own chunks and index
tables. Building one again re-chunks (seconds) and embeds only chunks it has not embedded yet, so
each variant costs its embedding once."""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from pipelines.ingest.chunking import Chunker, ChunkingConfig
from pipelines.ingest.tables import write_chunks
from pipelines.models import resolve_embedding_model
from pipelines.settings import validate_collection
from pipelines.store import Store, sql_in


@dataclass(frozen=True)
class Chunking:
    tokens: int
    overlap: int

    def __post_init__(self) -> None:
        if not 0 <= self.overlap < self.tokens:
            raise ValueError(f"chunk overlap must be in [0, {self.tokens}), got {self.overlap}")

    @property
    def label(self) -> str:
        return f"{self.tokens}/{self.overlap}"

    @classmethod
    def parse(cls, label: str) -> Chunking:
        tokens, _, overlap = label.partition("/")
        return cls(int(tokens), int(overlap or 0))


def variant_name(collection: str, chunking: Chunking) -> str:
    return validate_collection(f"{collection}-c{chunking.tokens}o{chunking.overlap}")


def chunk_variant(
    store: Store, collection: str, chunking: Chunking, model_path: str | None, min_tokens: int = 1
) -> pl.DataFrame:
    """The parent's current documents, chunked with CHUNKING (not yet validated or written)."""
    docs = pl.from_arrow(store.documents(collection).to_arrow())
    assert isinstance(docs, pl.DataFrame)
    if docs.is_empty():
        raise ValueError(f"collection {collection!r} has no documents to chunk")
    cfg = ChunkingConfig(chunking.tokens, chunking.overlap, min_tokens)
    return Chunker(resolve_embedding_model(model_path), cfg).chunk(docs)


def write_variant_chunks(store: Store, parent: str, variant: str, chunks: pl.DataFrame) -> None:
    """Replace the variant's chunks by CHUNKS, document by document; drop documents the parent lost."""
    parent_ids = store.documents(parent).to_arrow().column("id").to_pylist()
    write_chunks(store, variant, parent_ids, chunks)
    table = store.chunks(variant)
    gone = set(table.to_arrow().column("doc_id").to_pylist()) - set(parent_ids)
    if gone:
        table.delete(sql_in("doc_id", sorted(gone)))
