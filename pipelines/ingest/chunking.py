"""Token-aware chunking with overlap that prefers paragraph and heading boundaries, in polars.

Tokens are counted in the embedding model's own tokenizer, so a chunk never exceeds what the
encoder reads. Window starts are laid out every `step` tokens and moved forward to a paragraph or
heading start when one is within `slack` tokens; each window ends `overlap` tokens after the next
window's start. So chunks cover every token, overlap, never exceed `chunk_tokens`, and mostly begin
at a paragraph. Heading path and PDF page come from as-of joins. No per-row Python loop on the data.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
from tokenizers import Tokenizer

from pipelines.ids import chunk_id

PAGE_BREAK = "\f"  # parsers put a form feed between PDF pages
MAX_HEADING_LEVEL = 6


@dataclass(frozen=True)
class ChunkingConfig:
    chunk_tokens: int = 200
    overlap: int = 32
    min_tokens: int = 1

    def __post_init__(self) -> None:
        if self.chunk_tokens < 16:
            raise ValueError(f"chunk_tokens must be >= 16, got {self.chunk_tokens}")
        if not 0 <= self.overlap < self.chunk_tokens // 2:
            raise ValueError(f"overlap must be in [0, chunk_tokens / 2), got {self.overlap}")

    @property
    def slack(self) -> int:
        """How far (in tokens) a window start may move forward to reach a paragraph start."""
        return self.chunk_tokens // 10

    @property
    def step(self) -> int:
        return self.chunk_tokens - self.overlap - self.slack


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
        pairs = itertools.chain.from_iterable(e.offsets for e in encodings)
        flat = np.fromiter(itertools.chain.from_iterable(pairs), dtype=np.int64).reshape(-1, 2)
        doc_row = np.repeat(np.arange(len(texts)), lengths)
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if len(lengths) else lengths
        tok = np.arange(len(flat)) - np.repeat(first, lengths)
        return pl.DataFrame({"doc_row": doc_row, "tok": tok, "start": flat[:, 0], "end": flat[:, 1]})

    def chunk(self, documents: pl.DataFrame) -> pl.DataFrame:
        cfg = self.config
        docs = documents.select("id", "title", "text", "content_hash", "source_uri").with_row_index("doc_row")
        docs = docs.with_columns(pl.col("doc_row").cast(pl.Int64))
        tokens = self.token_offsets(docs["text"].to_list())
        if tokens.is_empty():
            return _empty_chunks()
        lines = _lines(docs)
        n_tokens = tokens.group_by("doc_row").agg(n=pl.len())
        # Paragraph starts as token indexes: the first token at or after each paragraph's first char.
        para = (
            lines.filter(pl.col("para_start"))
            .select("doc_row", pl.col("line_start").alias("start"))
            .sort("doc_row", "start")
            .join_asof(
                tokens.sort("doc_row", "start"),
                on="start",
                by="doc_row",
                strategy="forward",
                check_sortedness=False,
            )
            .drop_nulls("tok")
            .select("doc_row", pl.col("tok").alias("para_tok"))
            .unique()
            .sort("doc_row", "para_tok")
        )
        nominal = (
            n_tokens.with_columns(s=pl.int_ranges(0, pl.col("n"), cfg.step)).explode("s").sort("doc_row", "s")
        )
        windows = (
            nominal.join_asof(
                para,
                left_on="s",
                right_on="para_tok",
                by="doc_row",
                strategy="forward",
                tolerance=cfg.slack,
                check_sortedness=False,
            )
            .with_columns(first=pl.when(pl.col("s") == 0).then(0).otherwise(pl.coalesce("para_tok", "s")))
            .with_columns(
                last=pl.min_horizontal(
                    pl.col("first").shift(-1).over("doc_row") + cfg.overlap, pl.col("n")
                ).fill_null(pl.col("n"))
            )
            .filter((pl.col("s") == 0) | (pl.col("first") + cfg.overlap < pl.col("n")))
            .with_columns(
                last=pl.when(pl.col("first").shift(-1).over("doc_row").is_null())
                .then(pl.col("n"))
                .otherwise(pl.col("last"))
            )
        )
        ends = tokens.select("doc_row", pl.col("tok").alias("last_tok"), pl.col("end").alias("char_end"))
        spans = (
            windows.join(
                tokens.select("doc_row", pl.col("tok").alias("first"), pl.col("start").alias("char_start")),
                on=["doc_row", "first"],
            )
            .with_columns(last_tok=pl.col("last") - 1)
            .join(ends, on=["doc_row", "last_tok"])
            .with_columns(token_count=(pl.col("last") - pl.col("first")).cast(pl.Int32))
            .sort("doc_row", "first")
        )
        chunks = spans.join(docs, on="doc_row").with_columns(
            pl.col("text")
            .str.slice(pl.col("char_start"), pl.col("char_end") - pl.col("char_start"))
            .alias("chunk"),
            (
                pl.col("text").str.slice(0, pl.col("char_start")).str.count_matches(PAGE_BREAK, literal=True)
                + 1
            )
            .cast(pl.Int32)
            .alias("page_no"),
            pl.col("text").str.contains(PAGE_BREAK, literal=True).alias("paged"),
            (pl.col("first").rank("ordinal").over("doc_row").cast(pl.Int32) - 1).alias("chunk_index"),
        )
        chunks = chunks.join(
            _heading_paths(lines, chunks.select("doc_row", "char_start")),
            on=["doc_row", "char_start"],
            how="left",
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
            pl.col("chunk").str.replace_all(PAGE_BREAK, "\n", literal=True).alias("text"),
            "chunk_index",
            "token_count",
            pl.col("chunk").str.len_chars().cast(pl.Int32).alias("char_count"),
            pl.col("char_start").cast(pl.Int32),
            "source_uri",
            pl.col("heading").fill_null(""),
            pl.when(pl.col("paged")).then(pl.col("page_no")).otherwise(None).cast(pl.Int32).alias("page"),
        )


def _lines(docs: pl.DataFrame) -> pl.DataFrame:
    """One row per line: where it starts, whether it starts a paragraph, its heading level and text."""
    lines = (
        docs.select("doc_row", pl.col("text").str.split("\n").alias("line"))
        .explode("line")
        .with_columns(length=pl.col("line").str.len_chars() + 1)
        .with_columns(line_start=(pl.col("length").cum_sum() - pl.col("length")).over("doc_row"))
        .with_columns(
            blank=pl.col("line").str.strip_chars().str.len_chars() == 0,
            level=pl.col("line").str.extract(r"^(#{1,6})\s+\S", 1).str.len_chars(),
        )
    )
    prev_blank = pl.col("blank").shift(1).over("doc_row").fill_null(True)
    return lines.with_columns(
        para_start=~pl.col("blank") & (prev_blank | pl.col("level").is_not_null()),
        heading=pl.col("line").str.replace(r"^#{1,6}\s+", "").str.replace(r"\s*#*\s*$", ""),
    )


def _heading_paths(lines: pl.DataFrame, starts: pl.DataFrame) -> pl.DataFrame:
    """For each (doc_row, char_start): "H1 > H2 > ..." of the headings in force at that point."""
    out = starts.unique().sort("doc_row", "char_start")
    headings = lines.filter(pl.col("level").is_not_null()).select("doc_row", "line_start", "level", "heading")
    for level in range(1, MAX_HEADING_LEVEL + 1):
        at = (
            headings.filter(pl.col("level") == level)
            .drop("level")
            .sort("doc_row", "line_start")
            .rename({"line_start": f"p{level}", "heading": f"h{level}"})
        )
        out = out.join_asof(
            at,
            left_on="char_start",
            right_on=f"p{level}",
            by="doc_row",
            strategy="backward",
            check_sortedness=False,
        )
    # A heading belongs to the path only if no higher-level heading came after it.
    parts = []
    for level in range(1, MAX_HEADING_LEVEL + 1):
        higher = [pl.col(f"p{k}") for k in range(1, level)]
        newest_higher = pl.max_horizontal(higher).fill_null(-1) if higher else pl.lit(-1)
        parts.append(pl.when(pl.col(f"p{level}") > newest_higher).then(pl.col(f"h{level}")))
    return out.select(
        "doc_row", "char_start", pl.concat_list(parts).list.drop_nulls().list.join(" > ").alias("heading")
    )


def _empty_chunks() -> pl.DataFrame:
    from pipelines.schemas import CHUNKS

    return pl.from_arrow(CHUNKS.empty_table())  # type: ignore[return-value]
