"""Real passages for benchmarks: docstrings of the standard library and installed packages,
read with `ast` (nothing imported), so every machine has hundreds of thousands of them."""

from __future__ import annotations

import ast
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl


def _roots() -> list[Path]:
    paths = {sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["purelib"]}
    return [Path(p) for p in sorted(paths) if Path(p).is_dir()]


def docstrings(min_chars: int = 80, max_chars: int | None = None) -> Iterator[str]:
    for root in _roots():
        for file in sorted(root.rglob("*.py")):
            try:
                tree = ast.parse(file.read_bytes())
            except (SyntaxError, ValueError, OSError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= min_chars:
                        yield doc if max_chars is None else doc[:max_chars]


def passages(n: int, min_chars: int = 80, max_chars: int | None = None) -> list[str]:
    out: list[str] = []
    for doc in docstrings(min_chars, max_chars):
        out.append(doc)
        if len(out) == n:
            return out
    print(f"only {len(out)} passages found (asked for {n})", file=sys.stderr)
    return out


def chunk_frame(texts: list[str], prefix: str = "c") -> pl.DataFrame:
    """Texts as rows of a collection's chunks table (one chunk per document), for embedding runs."""
    import polars as pl

    from pipelines.ids import content_hash

    n = len(texts)
    return pl.DataFrame(
        {
            "id": [f"{prefix}{i}" for i in range(n)],
            "doc_id": [f"{prefix}d{i}" for i in range(n)],
            "doc_hash": [content_hash(t) for t in texts],
            "title": [f"passage {i}" for i in range(n)],
            "text": texts,
            "chunk_index": [0] * n,
            "token_count": [1] * n,
            "char_count": [len(t) for t in texts],
            "char_start": [0] * n,
            "source_uri": ["benchmark"] * n,
            "heading": [""] * n,
            "page": [None] * n,
        },
        schema_overrides={
            "chunk_index": pl.Int32,
            "token_count": pl.Int32,
            "char_count": pl.Int32,
            "char_start": pl.Int32,
            "page": pl.Int32,
        },
    )
