"""Token-aware chunking with overlap, vectorised with polars.

Tokens are counted in the embedding model's own tokenizer, so a chunk never exceeds what the
encoder reads. Each token is assigned to the one or two overlapping windows that contain it, and
windows become chunks by a group-by on (document, window): no per-row Python loop on the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from pipelines.ids import chunk_id


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int = 200
    overlap: int = 32
    min_tokens: int = 1

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be >= 16, got {self.chunk_tokens}")
        if not 0 <= self.overlap < self.chunk_tokens:
            raise ValueError(f"overlap must be in [0, chunk_tokens), got {self.overlap}")

    @property
    def step(self) -> int:
        return self.chunk_tokens - self.overlap


class Chunker:
    """Splits documents (id, title, text, content_hash, source_uri) into chunks."""

    def __init__(self, tokenizer_path: str | Path, config: ChunkingConfig | None = None) -> None:
        path = Path(tokenizer_path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer.json at {path}")
        self.tokenizer = Tokenizer.from_file(str(file))
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.config = config or ChunkingConfig()

    def to_dict(self) -> dict[str, int]:
        c = self.config
        return {"chunk_tokens": c.chunk_tokens, "overlap": c.overlap, "min_tokens": c.min_tokens}

    def token_offsets(self, texts: list[str]) -> pl.DataFrame:
        """One row per token: (doc_row, tok, start, end) character offsets."""
        encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
        lengths = np.fromiter((len(e.offsets) for e in encodings), dtype=np.int64, count=len(encodings))
        flat = np.array([o for e in encodings for o in e.offsets], dtype=np.int64).reshape(-1, 2)
        doc_row = np.repeat(np.arange(len(texts)), lengths)
        starts_of_doc = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
        tok = np.arange(len(flat)) - np.repeat(starts_of_doc, lengths)
        return pl.DataFrame({"doc_row": doc_row, "tok": tok, "start": flat[:, 0], "end": flat[:, 1]})

    def chunk(self, documents: pl.DataFrame) -> pl.DataFrame:
        cfg = self.config
        docs = documents.select("id", "title", "text", "content_hash", "source_uri").with_row_index("doc_row")
        if docs.is_empty():
            return _empty_chunks()
        tokens = self.token_offsets(docs["text"].to_list())
        step, size = cfg.step, cfg.chunk_tokens
        # window w spans tokens [w*step, w*step + size): a token is in window t//step, and also in
        # the previous window when it falls inside that window's overlap tail.
        primary = tokens.with_columns(window=pl.col("tok") // step)
        secondary = primary.filter(
            (pl.col("window") > 0) & (pl.col("tok") % step < size - step)
        ).with_columns(window=pl.col("window") - 1)
        windows = (
            pl.concat([primary, secondary])
            .group_by("doc_row", "window")
            .agg(
                char_start=pl.col("start").min(),
                char_end=pl.col("end").max(),
                token_count=pl.len(),
                first_tok=pl.col("tok").min(),
            )
        )
        # Drop a trailing window that only repeats the previous window's overlap.
        last = tokens.group_by("doc_row").agg(n_tokens=pl.len())
        windows = (
            windows.join(last, on="doc_row")
            .filter(
                (pl.col("window") == 0)
                | (pl.col("first_tok") + cfg.overlap < pl.col("n_tokens"))
                | (cfg.overlap == 0)
            )
            .sort("doc_row", "window")
        )
        chunks = windows.join(docs, on="doc_row").with_columns(
            text=pl.col("text").str.slice(pl.col("char_start"), pl.col("char_end") - pl.col("char_start")),
        )
        chunks = chunks.with_columns(
            chunk_index=pl.col("window").rank("ordinal").over("doc_row").cast(pl.Int32) - 1,
        )
        ids = [
            chunk_id(d, h, i)
            for d, h, i in zip(chunks["id"], chunks["content_hash"], chunks["chunk_index"], strict=True)
        ]
        return chunks.select(
            pl.Series("id", ids, dtype=pl.String),
            pl.col("id").alias("doc_id"),
            pl.col("content_hash").alias("doc_hash"),
            "title",
            "text",
            "chunk_index",
            pl.col("token_count").cast(pl.Int32),
            pl.col("text").str.len_chars().cast(pl.Int32).alias("char_count"),
            pl.col("char_start").cast(pl.Int32),
            "source_uri",
        )


def _empty_chunks() -> pl.DataFrame:
    from pipelines.schemas import CHUNKS

    return pl.from_arrow(CHUNKS.empty_table())  # type: ignore[return-value]
