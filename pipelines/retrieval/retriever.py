"""The one retriever: serving, evaluation and notebooks all call `Retriever.retrieve`.

Hybrid mode fuses the vector and full-text rankings (`fusion.rrf_fuse`, with the config's length
prior).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from lancedb.background_loop import LOOP

from pipelines.index.indexes import ANN_QUERY
from pipelines.models import tuned_embedder_path
from pipelines.retrieval.fusion import length_scale, rrf_fuse
from pipelines.retrieval.listwise import LLMFactory
from pipelines.retrieval.ltr import FeatureRanker
from pipelines.retrieval.query import MODES, Embed, Hit, Mode, Query, RetrievalConfig, where_clause
from pipelines.retrieval.rerank import AnyReranker, load_reranker
from pipelines.store import ModelInfo, Store

_COLUMNS = ["id", "doc_id", "title", "text", "source_uri", "chunk_index"]


@dataclass(frozen=True)
class _Plan:
    text: str
    mode: Mode
    top_k: int
    n: int  # candidates per ranking
    where: str | None
    vector: np.ndarray | None
    depth: int = 0  # the reranker's: that many hits are ranked, reranked, then cut to top_k

    @property
    def keep(self) -> int:
        return max(self.top_k, self.depth)


class Retriever:
    """Searches one collection's active index table."""

    champion_version: str | None = None  # the registered champion this config came from, if any
    min_similarity: float | None = None  # the champion's refusal threshold (generation/refusal.py)
    # The champion's fine-tuned embedder ({"path", "uri", "name", "path_hash", "index_table"}) when
    # its index table is the one searched: queries must be embedded by it. None: the settings' model.
    embedder: dict[str, Any] | None = None
    # The reranking stage (retrieval/rerank.py): used when the config's rerank_depth > 0.
    reranker: AnyReranker | None = None
    _counts: tuple[int, dict[str, int]] | None = None  # (table version, chunks per document)

    def __init__(
        self, store: Store, collection: str, config: RetrievalConfig | None = None, table: str | None = None
    ) -> None:
        """TABLE: one of the collection's index tables by name (a trial's); None: the active one."""
        self.store = store
        self.collection = collection
        self.config = config or RetrievalConfig()
        self.table = store.index_table_named(collection, table) if table else store.active_index(collection)
        self.model: ModelInfo = Store.model_of(self.table)
        self._async_table = store.open_async(self.table.name)

    @classmethod
    def champion(
        cls,
        store: Store,
        collection: str,
        base: RetrievalConfig | None = None,
        reranker_cache: Path | None = None,
        default_reranker: str | None = None,
        llm: LLMFactory | None = None,
        **override: Any,
    ) -> Retriever:
        """The retriever serving uses: BASE (settings), then the collection's promoted champion
        parameters, then OVERRIDE (an operator's live change) on top; the champion's reranker
        too (else DEFAULT_RERANKER, a folder or `llm`), with RERANKER_CACHE (the model cache, where
        it is fetched to on a node without it) and LLM (the generator a listwise reranker uses)."""
        champion = store.champion(collection) or {}
        params = {**asdict(base or RetrievalConfig()), **champion.get("retrieval", {}), **override}
        retriever = cls(store, collection, RetrievalConfig(**params))
        retriever.champion_version = champion.get("version")
        tuned = champion.get("embedder")
        if tuned and tuned.get("index_table") == retriever.table.name:
            retriever.embedder = tuned
        ranker = champion.get("reranker") or ({"path": default_reranker} if default_reranker else None)
        if ranker and retriever.config.rerank_depth and reranker_cache is not None:
            retriever.reranker = load_reranker(ranker, reranker_cache, llm=llm)
        # The champion's threshold (learned with its config), else the latest evaluation's.
        learned = (champion.get("refusal") or {}).get("min_similarity")
        retriever.min_similarity = learned if learned is not None else store.refusal(collection)
        return retriever

    def to_dict(self) -> dict[str, Any]:
        return {
            "collection": self.collection,
            "table": self.table.name,
            "model": asdict(self.model),
            "champion_version": self.champion_version,
            "min_similarity": self.min_similarity,
            "embedder": (self.embedder or {}).get("name"),
            "reranker": str(self.reranker.model_path) if self.reranker else None,
            **asdict(self.config),
        }

    def query_model(self, default: str | None, cache_dir: Path) -> str | None:
        """The model folder this retriever's queries must be embedded with: the champion's
        fine-tuned embedder when its table is searched, else DEFAULT (the settings' model)."""
        return tuned_embedder_path(self.embedder, default, cache_dir)

    @property
    def _rerank_depth(self) -> int:
        """The hits the reranker reorders: the config's depth, 0 without a reranker."""
        return self.config.rerank_depth if self.reranker is not None else 0

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
        counts = await self._chunk_counts() if self.config.length_prior else {}
        ranked = [self._rank(p, v, t, counts) for p, v, t in zip(plans, vec_rows, txt_rows, strict=True)]
        if self.reranker is not None and self._rerank_depth:
            texts = [p.text for p in plans]
            if isinstance(self.reranker, FeatureRanker):  # microseconds: no thread hop
                ranked = self.reranker.rerank_many(texts, ranked, self._rerank_depth)
            else:
                ranked = await asyncio.to_thread(self.reranker.rerank_many, texts, ranked, self._rerank_depth)
        return [hits[: p.top_k] for p, hits in zip(plans, ranked, strict=True)]

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
        n = max(self.config.candidates, top_k, self._rerank_depth)
        return _Plan(q.text, mode, top_k, n, where_clause(q.filters), vector, self._rerank_depth)

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
            # A flat table ignores both; on the ANN index they set recall (indexes.ANN_QUERY).
            q = q.nprobes(self.config.nprobes or ANN_QUERY["nprobes"])
            q = q.refine_factor(self.config.refine_factor or ANN_QUERY["refine_factor"])
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

    def _rank(
        self,
        p: _Plan,
        vec_rows: list[dict[str, Any]],
        txt_rows: list[dict[str, Any]],
        counts: dict[str, int],
    ) -> list[Hit]:
        """COUNTS: chunks per document (the length prior's)."""
        if p.mode == "vector":
            return [self._hit(r, 1.0 - float(r["_distance"])) for r in vec_rows[: p.keep]]
        if p.mode == "text":
            return [self._hit(r, float(r["_score"])) for r in txt_rows[: p.keep]]
        cfg = self.config
        bm25 = {r["id"]: r["_score"] for r in txt_rows}
        rows = {r["id"]: r for r in txt_rows} | {
            r["id"]: {**r, "_score": bm25.get(r["id"])} for r in vec_rows
        }
        weighted = [(vec_rows, cfg.vector_weight), (txt_rows, cfg.text_weight)]
        per_doc = length_scale(counts, cfg.length_prior)
        scale = (lambda chunk: per_doc(rows[chunk]["doc_id"])) if per_doc else None
        fused = rrf_fuse([([r["id"] for r in found], w) for found, w in weighted], cfg.rrf_k, scale)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[: p.keep]
        return [self._hit(rows[i], s) for i, s in best]

    async def _chunk_counts(self) -> dict[str, int]:
        """Chunks per document in the searched table (the length prior's), read once per table
        version: one column scan (5 ms at 890 chunks); the version check costs ~50 us a search."""
        version = await self._async_table.version()
        if self._counts is None or self._counts[0] != version:
            import pyarrow.compute as pc

            found = await self._async_table.query().select(["doc_id"]).to_arrow()
            pairs = pc.value_counts(found.column("doc_id")).to_pylist()
            self._counts = (version, {p["values"]: int(p["counts"]) for p in pairs})
        return self._counts[1]

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
            round(1.0 - float(row["_distance"]), 6) if row.get("_distance") is not None else None,
            round(float(row["_score"]), 6) if row.get("_score") is not None else None,
        )
