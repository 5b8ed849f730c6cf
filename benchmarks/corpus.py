"""Real passages for benchmarks: docstrings of the standard library and installed packages,
read with `ast` (nothing imported), so every machine has hundreds of thousands of them."""

from __future__ import annotations

import ast
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path


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
