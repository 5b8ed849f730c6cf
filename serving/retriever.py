"""The searcher: batches the searches that arrive while it is busy, embeds each batch's queries in
one forward pass (its own `Embedder`, or one call to the query embedder deployment), and answers
them with the one `Retriever` of each collection. It runs inside the ingress replica
(`retriever: inline`, the CPU default: one crossing between processes fewer) or as the
`RetrieverService` deployment that scales apart (`retriever: deployment`, serve-gpu.yaml)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Any

from ray import serve
from ray.serve.handle import DeploymentHandle

from pipelines.index.embedding import Embedder
from pipelines.retrieval import Embed, Hit, Query, RetrievalConfig, Retriever
from pipelines.settings import Settings
from pipelines.store import Store
from serving import errors, resilience
from serving.batching import Batcher, release_slot
from serving.embedder import tuned_embedder
from serving.timing import elapsed_ms


def _model_mismatch(r: Retriever, query_model_hash: str) -> errors.IndexModelMismatchError:
    return errors.IndexModelMismatchError(
        f"collection {r.collection!r} was embedded with {r.model.name} ({r.model.path_hash[:8]}); the "
        f"query embedder runs another model ({query_model_hash[:8]}): re-embed or change the model"
    )


class Searcher:
    """Answers searches in batches: one call to the query embedder and one LanceDB vector scan per
    batch. One `Retriever` per collection; it re-reads which index table is active every few
    seconds, so a new embed run or a newly promoted index is served without a restart."""

    RECHECK_S = 5.0
    MAX_BATCH = 32
    # One batch at the embedder at a time (a batch releases its slot once its vectors are back, and
    # is searched while the next is embedded): what arrives meanwhile makes the next batch bigger.
    # On 2 cores that beat two overlapping batches by ~5% in requests/s (benchmarks/README.md).
    SLOTS = 1

    def __init__(self, embedder: DeploymentHandle | None, settings: dict[str, Any]) -> None:
        self.settings = Settings(**settings)
        self.embedder = embedder  # None: embed here (query_embedder inline)
        self._own: Embedder | None = None
        if embedder is None:  # one thread: a batch's forward pass beside this replica's searches
            self._own = Embedder(self.settings.embedding_model, device=self.settings.embed_device, threads=1)
        self._batcher = Batcher(self._search_batch, self.MAX_BATCH, self.SLOTS)
        self.store = Store.from_settings(self.settings, read_consistency=timedelta(seconds=self.RECHECK_S))
        self.config = RetrievalConfig.from_settings(self.settings)
        self._base = self.config
        self._override: dict[str, Any] = {}
        # collection -> (retriever, checked at, (active table, champion version), table version)
        self._retrievers: dict[str, tuple[Retriever, float, tuple[str, str | None], int]] = {}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this on every live replica when the app's `user_config` changes (no restart):
        retrieval parameters an operator sets live, e.g. {"retrieval": {"mode": ..., "rrf_k": ...}},
        which apply on top of each collection's promoted champion, {"max_batch_size": 32} (1 turns
        search batching off) and {"max_concurrent_batches": 1}."""
        cfg = user_config or {}
        max_size = int(cfg.get("max_batch_size", self.MAX_BATCH))
        slots = int(cfg.get("max_concurrent_batches", self.SLOTS))
        if max_size < 1 or slots < 1:
            raise ValueError("max_batch_size and max_concurrent_batches must be >= 1")
        self._batcher.max_size, self._batcher.slots = max_size, slots
        self._override = dict(cfg.get("retrieval") or {})
        self.config = RetrievalConfig(**{**asdict(self._base), **self._override})  # validates now
        self._retrievers.clear()

    def _get(self, collection: str) -> Retriever:
        """The collection's retriever; every RECHECK_S it looks whether a new index was built or a
        new champion promoted (`ragline optimize`), and follows."""
        cached = self._retrievers.get(collection)
        now = time.monotonic()
        if cached and now - cached[1] < self.RECHECK_S:
            return cached[0]
        active = self.store.active_index(collection)
        state = (active.name, (self.store.champion(collection) or {}).get("version"))
        retriever = cached[0] if cached and cached[2] == state else None
        if retriever is None:
            s = self.settings  # the model cache: where a champion's reranker is fetched to, if need be
            retriever = Retriever.champion(
                self.store,
                collection,
                self._base,
                s.model_cache,
                s.reranker_model,
                self._llm,
                **self._override,
            )
        # The table version is read here, not per request: a sync LanceDB call costs a thread hop,
        # and the store itself sees new versions only every RECHECK_S.
        self._retrievers[collection] = (retriever, now, state, retriever.table_version)
        return retriever

    def _llm(self) -> Any:
        """The generator a listwise reranker (kind "llm") asks for, built only then."""
        from pipelines.generation.backends import listwise_llm

        return listwise_llm(self.settings)

    def describe(self, collection: str) -> dict[str, Any]:
        r = self._get(collection)
        return {**r.to_dict(), "table_version": r.table_version}

    def collections(self) -> list[str]:
        """What can be addressed: the indexed collections, the default one first."""
        names = self.store.indexed_collections()
        default = self.settings.default_collection
        return sorted(names, key=lambda n: (n != default, n))

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int | None,
        mode: str | None,
        filters: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """{"hits": [...], "mode": the mode used, "version": "<table>@v<n>/<mode>", and for the
        ingress's metrics and traces "embed_ms" (the batch's query embedding), "search_ms"}."""
        t = time.perf_counter()
        cached = self._retrievers.get(collection)
        r = self._get(collection)
        used = mode or r.config.mode
        query_ = Query(query, None, top_k, used, filters)  # type: ignore[arg-type]
        hits, embed_ms = await self._batcher.submit((r, query_))
        return {
            "hits": [h.to_dict() for h in hits],
            "mode": used,
            "version": f"{r.table.name}@v{self._retrievers[collection][3]}/{used}"
            + (f"+rerank{r.config.rerank_depth}" if r.reranker and r.config.rerank_depth else ""),
            "embed_ms": embed_ms,
            "search_ms": round(elapsed_ms(t) - (embed_ms or 0.0), 1),
            "cache_hit": cached is not None and cached[0] is r,
            "min_similarity": (
                r.min_similarity
                if self.settings.refusal_min_similarity is None
                else self.settings.refusal_min_similarity
            ),
        }

    async def _search_batch(
        self, calls: list[tuple[Retriever, Query]]
    ) -> list[tuple[list[Hit], float | None] | Exception]:
        """Searches that arrived while the replica was busy (serving/batching.py) share one embedder
        call and one LanceDB vector scan per collection; their full-text searches run while the
        embedder works, and the next batch goes to the embedder while this one is searched. A bad
        query (a filter on an unknown field, say) fails alone: its group is retried one by one."""
        out: list[Any] = [None] * len(calls)
        by_retriever: dict[int, list[int]] = {}
        for i, (r, _) in enumerate(calls):
            by_retriever.setdefault(id(r), []).append(i)
        for members in by_retriever.values():
            r = calls[members[0]][0]
            queries = [calls[i][1] for i in members]
            timing: dict[str, float] = {}
            try:
                results: list[Any] = await r.aretrieve_many(queries, self._embed_for(r, timing))
            except Exception:
                one_by_one = [r.aretrieve_many([q], self._embed_for(r, timing)) for q in queries]
                results = await asyncio.gather(*one_by_one, return_exceptions=True)
                results = [x if isinstance(x, Exception) else x[0] for x in results]
            for i, result in zip(members, results, strict=True):
                out[i] = result if isinstance(result, Exception) else (result, timing.get("embed_ms"))
        return out

    async def embed_ready(self) -> bool:
        """For /readyz: the query embedder answers (this replica's own, or the deployment)."""
        await self._embed(["ready"])
        return True

    async def _embed(self, texts: list[str], tuned: dict[str, Any] | None = None) -> dict[str, Any]:
        """{"model_hash", "vectors"}: from this replica's embedder in a thread (the event loop keeps
        serving), or from the deployment, asked again once if its replica died. TUNED: a champion's
        fine-tuned embedder (Retriever.embedder); None: the settings' model."""
        if self.embedder is None:
            own = self._own if tuned is None else await tuned_embedder(tuned, self.settings)
            assert own is not None
            vectors = await asyncio.to_thread(own.embed, texts)
            return {"model_hash": own.info.path_hash, "vectors": vectors}
        handle = self.embedder
        if tuned is None:
            return await resilience.retry_if_replica_died(lambda: handle.embed.remote(texts))
        return await resilience.retry_if_replica_died(lambda: handle.embed_model.remote(tuned, texts))

    def _embed_for(self, r: Retriever, timing: dict[str, float]) -> Embed:
        """The query embedder as R's embed function, checked to run the model R's index was built
        with."""

        async def embed(texts: list[str]) -> Any:
            t = time.perf_counter()
            embedded = await self._embed(texts, r.embedder)
            timing["embed_ms"] = elapsed_ms(t)
            release_slot()  # the next batch may go to the embedder while this one is searched
            if embedded["model_hash"] != r.model.path_hash:
                raise _model_mismatch(r, embedded["model_hash"])
            return embedded["vectors"]

        return embed


@serve.deployment(
    ray_actor_options={"num_cpus": 0.25},
    max_ongoing_requests=64,  # >= the batch size, or batches never fill
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class RetrieverService(Searcher):
    """The searcher as a deployment of its own (`retriever: deployment`)."""
