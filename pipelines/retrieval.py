"""The one retriever: serving, evaluation and notebooks all call `Retriever.retrieve`.

Hybrid mode fuses the vector and full-text rankings with weighted reciprocal rank fusion:
score(d) = sum over rankings r of weight_r / (rrf_k + rank_r(d)).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from pipelines.settings import Settings
from pipelines.store import ModelInfo, Store, sql_str

Mode = Literal["hybrid", "vector", "text"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "text")
_FIELD = re.compile(r"^[a-z_][a-z0-9_]*$")
_COLUMNS = ["id", "doc_id", "title", "text", "source_uri", "chunk_index"]
FILTERABLE = frozenset({"doc_id", "title", "source_uri", "chunk_index"})


@dataclass
class Hit:
    id: str
    doc_id: str
    title: str
    text: str
    score: float
    source_uri: str = ""
    chunk_index: int = 0

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
    # ANN search knobs; used only when the index table has an ANN index (None = LanceDB's default)
    nprobes: int | None = None
    refine_factor: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RetrievalConfig:
        """The deployment's defaults (RAGLINE_RETRIEVAL_MODE, _TOP_K, _RRF_K, _*_WEIGHT)."""
        return cls(
            mode=settings.retrieval_mode,
            top_k=settings.top_k,
            rrf_k=settings.rrf_k,
            vector_weight=settings.vector_weight,
            text_weight=settings.text_weight,
        )

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 1 <= self.top_k <= 100:
            raise ValueError(f"top_k must be in 1..100, got {self.top_k}")
        if self.rrf_k < 0 or self.vector_weight < 0 or self.text_weight < 0:
            raise ValueError("rrf_k and the weights must be >= 0")


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
        rendered = [str(int(v)) if isinstance(v, int) else sql_str(str(v)) for v in values]
        parts.append(f"{field} IN ({', '.join(rendered)})")
    return " AND ".join(parts)


def rrf_fuse(rankings: list[tuple[list[str], float]], k: int) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ids, weight in rankings:
        for rank, item in enumerate(ids, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return scores


class Retriever:
    """Searches one collection's active index table."""

    champion_version: str | None = None  # the registered champion this config came from, if any

    def __init__(self, store: Store, collection: str, config: RetrievalConfig | None = None) -> None:
        self.store = store
        self.collection = collection
        self.config = config or RetrievalConfig()
        self.table = store.active_index(collection)
        self.model: ModelInfo = Store.model_of(self.table)

    @classmethod
    def champion(
        cls, store: Store, collection: str, base: RetrievalConfig | None = None, **override: Any
    ) -> Retriever:
        """The retriever serving uses: BASE (settings), then the collection's promoted champion
        parameters, then OVERRIDE (an operator's live change) on top."""
        champion = store.champion(collection) or {}
        params = {**asdict(base or RetrievalConfig()), **champion.get("retrieval", {}), **override}
        retriever = cls(store, collection, RetrievalConfig(**params))
        retriever.champion_version = champion.get("version")
        return retriever

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "table": self.table.name,
            "model": asdict(self.model),
            "champion_version": self.champion_version,
            **asdict(self.config),
        }

    @property
    def table_version(self) -> int:
        return int(self.table.version)

    def retrieve(
        self,
        query: str,
        vector: np.ndarray | list[float] | None = None,
        *,
        top_k: int | None = None,
        mode: Mode | None = None,
        filters: dict[str, Any] | None = None,
    ) -> list[Hit]:
        cfg = self.config
        mode = mode or cfg.mode
        top_k = top_k or cfg.top_k
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        where = where_clause(filters)
        n = max(cfg.candidates, top_k)
        if mode != "text" and vector is None:
            raise ValueError("vector and hybrid retrieval need the query's vector")
        vec_rows = self._vector(np.asarray(vector, dtype=np.float32), n, where) if mode != "text" else []
        txt_rows = self._text(query, n, where) if mode != "vector" and query.strip() else []
        if mode == "vector":
            return [self._hit(r, 1.0 - float(r["_distance"])) for r in vec_rows[:top_k]]
        if mode == "text":
            return [self._hit(r, float(r["_score"])) for r in txt_rows[:top_k]]
        rows = {r["id"]: r for r in txt_rows} | {r["id"]: r for r in vec_rows}
        fused = rrf_fuse(
            [
                ([r["id"] for r in vec_rows], cfg.vector_weight),
                ([r["id"] for r in txt_rows], cfg.text_weight),
            ],
            cfg.rrf_k,
        )
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:top_k]
        return [self._hit(rows[i], s) for i, s in best]

    def _vector(self, vector: np.ndarray, n: int, where: str | None) -> list[dict[str, Any]]:
        if vector.shape != (self.model.dim,):
            raise ValueError(f"query vector has shape {vector.shape}, index expects ({self.model.dim},)")
        q = self.table.search(vector, vector_column_name="vector").distance_type("cosine").limit(n)
        if self.config.nprobes:
            q = q.nprobes(self.config.nprobes)
        if self.config.refine_factor:
            q = q.refine_factor(self.config.refine_factor)
        if where:
            q = q.where(where, prefilter=True)
        return q.select([*_COLUMNS, "_distance"]).to_list()

    def _text(self, query: str, n: int, where: str | None) -> list[dict[str, Any]]:
        q = self.table.search(query, query_type="fts", fts_columns="text").limit(n)
        if where:
            q = q.where(where, prefilter=True)
        return q.select([*_COLUMNS, "_score"]).to_list()

    @staticmethod
    def _hit(row: dict[str, Any], score: float) -> Hit:
        return Hit(
            row["id"],
            row["doc_id"],
            row["title"],
            row["text"],
            round(score, 6),
            row.get("source_uri") or "",
            int(row.get("chunk_index") or 0),
        )
