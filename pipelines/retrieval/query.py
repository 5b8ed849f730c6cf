"""What a search is: the query, its overrides and filters, the retrieval config, and the hits."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from pipelines.settings import Settings
from pipelines.store import sql_str

Mode = Literal["hybrid", "vector", "text"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "text")
Embed = Callable[[list[str]], Awaitable[Sequence[Any]]]  # query texts -> their vectors
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
# The chunk metadata a search may filter on, and the type of its values.
FILTER_TYPES: dict[str, type] = {"doc_id": str, "title": str, "source_uri": str, "chunk_index": int}
FILTERABLE = frozenset(FILTER_TYPES)


@dataclass
class Hit:
    id: str
    doc_id: str
    title: str
    text: str
    score: float
    source_uri: str = ""
    chunk_index: int = 0
    similarity: float | None = None  # cosine to the query vector, when the vector search found it
    text_score: float | None = None  # BM25 of the full-text search, when it found it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RetrievalConfig:
    mode: Mode = "hybrid"
    top_k: int = 5
    rrf_k: int = 60
    vector_weight: float = 1.0
    text_weight: float = 1.0
    candidates: int = 30  # per ranking, before fusion
    # hybrid mode: how much a long document's many chunks are discounted (retrieval/fusion.py)
    length_prior: float = 0.0
    # ANN search knobs; used only when the index table has an ANN index (None = LanceDB's default)
    nprobes: int | None = None
    refine_factor: int | None = None
    # the first hits the reranker reorders (retrieval/rerank.py); 0: no reranking
    rerank_depth: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalConfig:
        """The deployment's defaults (RAGLINE_RETRIEVAL_MODE, _TOP_K, _RRF_K, _*_WEIGHT, _LENGTH_PRIOR)."""
        return cls(
            mode=settings.retrieval_mode,
            top_k=settings.top_k,
            rrf_k=settings.rrf_k,
            vector_weight=settings.vector_weight,
            text_weight=settings.text_weight,
            length_prior=settings.length_prior,
            rerank_depth=settings.rerank_depth if settings.reranker_model else 0,
        )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= self.top_k <= 100:
            raise ValueError(f"top_k must be in 1..100, got {self.top_k}")
        if self.rrf_k < 0 or self.vector_weight < 0 or self.text_weight < 0:
            raise ValueError("rrf_k and the weights must be >= 0")
        if not 0 <= self.length_prior <= 1:
            raise ValueError(f"length_prior must be in 0..1, got {self.length_prior}")


@dataclass(frozen=True)
class Query:
    """One search: its text, its vector (vector and hybrid modes) and per-request overrides."""

    text: str
    vector: np.ndarray | list[float] | None = None
    top_k: int | None = None
    mode: Mode | None = None
    filters: dict[str, Any] | None = None


def where_clause(filters: dict[str, Any] | None) -> str | None:
    """Equality / membership filters on chunk metadata, as a safely quoted SQL predicate."""
    if not filters:
        return None
    parts = []
    for field, value in filters.items():
        if field not in FILTERABLE or not _FIELD.match(field):
            raise ValueError(f"cannot filter on {field!r}; filterable fields: {sorted(FILTERABLE)}")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise ValueError(f"filter {field!r} has an empty list")
        kind = FILTER_TYPES[field]
        # Checked here: LanceDB's own error for a mistyped literal is a Rust trace, not a reason.
        if any(not isinstance(v, kind) or isinstance(v, bool) for v in values):
            what = "whole numbers" if kind is int else "strings"
            raise ValueError(f"filter {field!r} takes {what}, got {value!r}")
        rendered = [str(v) if kind is int else sql_str(v) for v in values]
        parts.append(f"{field} IN ({', '.join(rendered)})")
    return " AND ".join(parts)
