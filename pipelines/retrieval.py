"""The one retriever: serving, evaluation and notebooks all call `Retriever.retrieve`.

Hybrid mode fuses the vector and full-text rankings with weighted reciprocal rank fusion:
score(d) = sum over rankings r of weight_r / (rrf_k + rank_r(d)).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import numpy as np
from lancedb.background_loop import LOOP

from pipelines.settings import Settings
from pipelines.store import ModelInfo, Store, sql_str

Mode = Literal["hybrid", "vector", "text"]
MODES: tuple[Mode, ...] = ("hybrid", "vector", "text")
Embed = Callable[[list[str]], Awaitable[Sequence[Any]]]  # query texts -> their vectors
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


@dataclass(frozen=True)
class Query:
    """One search: its text, its vector (vector and hybrid modes) and per-request overrides."""

    text: str
    vector: np.ndarray | list[float] | None = None
    top_k: int | None = None
    mode: Mode | None = None
    filters: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Plan:
    text: str
    mode: Mode
    top_k: int
    n: int  # candidates per ranking
    where: str | None
    vector: np.ndarray | None


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
        self._async_table = store.open_async(self.table.name)

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
        return self.retrieve_many([Query(query, vector, top_k, mode, filters)])[0]

    def retrieve_many(self, queries: Sequence[Query]) -> list[list[Hit]]:
        """For sync callers (evaluation, notebooks): runs on LanceDB's own background loop, so it
        works inside a running event loop (Jupyter) too."""
        return LOOP.run(self.aretrieve_many(queries))

    async def aretrieve_many(self, queries: Sequence[Query], embed: Embed | None = None) -> list[list[Hit]]:
        """Answers several queries at once: the vector searches share one table scan (one LanceDB
        query with several query vectors), the full-text searches run concurrently. With EMBED
        (texts → vectors), queries that need a vector and have none are embedded by it while
        their full-text searches already run. Raises ValueError for a bad query (the caller
        isolates it: see serving's RetrieverService)."""
        plans = [self._plan(q, deferred=embed is not None) for q in queries]
        texts = asyncio.ensure_future(asyncio.gather(*(self._text(p) for p in plans)))
        try:
            need = [i for i, p in enumerate(plans) if p.mode != "text" and p.vector is None]
            if need and embed is not None:
                vectors = await embed([plans[i].text for i in need])
                for i, vector in zip(need, vectors, strict=True):
                    plans[i] = replace(plans[i], vector=self._checked(vector))
            vec_rows = await self._vector_many(plans)
            txt_rows = await texts
        finally:
            if not texts.done():  # embedding failed: stop the text searches, quietly
                texts.add_done_callback(lambda f: f.cancelled() or f.exception())
                texts.cancel()
        return [self._rank(p, v, t) for p, v, t in zip(plans, vec_rows, txt_rows, strict=True)]

    def _plan(self, q: Query, deferred: bool = False) -> _Plan:
        """DEFERRED: a missing vector will be embedded (aretrieve_many's EMBED)."""
        mode = q.mode or self.config.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        top_k = q.top_k or self.config.top_k
        vector = None
        if mode != "text":
            if q.vector is None and not deferred:
                raise ValueError("vector and hybrid retrieval need the query's vector")
            vector = None if q.vector is None else self._checked(q.vector)
        return _Plan(q.text, mode, top_k, max(self.config.candidates, top_k), where_clause(q.filters), vector)

    def _checked(self, vector: np.ndarray | list[float]) -> np.ndarray:
        array = np.asarray(vector, dtype=np.float32)
        if array.shape != (self.model.dim,):
            raise ValueError(f"query vector has shape {array.shape}, index expects ({self.model.dim},)")
        return array

    async def _vector_many(self, plans: list[_Plan]) -> list[list[dict[str, Any]]]:
        out: list[list[dict[str, Any]]] = [[] for _ in plans]
        groups: dict[tuple[str | None, int], list[int]] = {}
        for i, p in enumerate(plans):
            if p.vector is not None:
                groups.setdefault((p.where, p.n), []).append(i)
        for (where, n), members in groups.items():
            vectors = [plans[i].vector for i in members]
            q = self._async_table.query().nearest_to(vectors if len(vectors) > 1 else vectors[0])
            q = q.column("vector").distance_type("cosine").limit(n)
            if self.config.nprobes:
                q = q.nprobes(self.config.nprobes)
            if self.config.refine_factor:
                q = q.refine_factor(self.config.refine_factor)
            if where:
                q = q.where(where)
            rows = (await q.select([*_COLUMNS, "_distance"]).to_arrow()).to_pylist()
            for row in rows:  # one query vector: no query_index column
                out[members[row.pop("query_index", 0)]].append(row)
        for rows in out:
            rows.sort(key=lambda r: r["_distance"])  # stable: LanceDB's order among ties is kept
        return out

    async def _text(self, p: _Plan) -> list[dict[str, Any]]:
        if p.mode == "vector" or not p.text.strip():
            return []
        q = self._async_table.query().nearest_to_text(p.text, columns="text").limit(p.n)
        if p.where:
            q = q.where(p.where)
        return (await q.select([*_COLUMNS, "_score"]).to_arrow()).to_pylist()

    def _rank(self, p: _Plan, vec_rows: list[dict[str, Any]], txt_rows: list[dict[str, Any]]) -> list[Hit]:
        if p.mode == "vector":
            return [self._hit(r, 1.0 - float(r["_distance"])) for r in vec_rows[: p.top_k]]
        if p.mode == "text":
            return [self._hit(r, float(r["_score"])) for r in txt_rows[: p.top_k]]
        cfg = self.config
        rows = {r["id"]: r for r in txt_rows} | {r["id"]: r for r in vec_rows}
        fused = rrf_fuse(
            [
                ([r["id"] for r in vec_rows], cfg.vector_weight),
                ([r["id"] for r in txt_rows], cfg.text_weight),
            ],
            cfg.rrf_k,
        )
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[: p.top_k]
        return [self._hit(rows[i], s) for i, s in best]

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
