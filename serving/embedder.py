"""The query embedder deployment: one `Embedder` per replica, embedding the lists of queries that
arrive together in one forward pass."""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from ray import serve

from pipelines.index.embedding import Embedder
from pipelines.models import tuned_embedder_path
from pipelines.settings import Settings


@serve.deployment(
    ray_actor_options={"num_cpus": 0.5},
    max_ongoing_requests=64,  # >= the batch size, or batches never fill
    autoscaling_config={"min_replicas": 1, "max_replicas": 2, "target_ongoing_requests": 16},
)
class QueryEmbedder:
    """Embeds queries. Callers send lists (the retriever sends each of its search batches), and
    lists that arrive together are embedded in one forward pass."""

    def __init__(self, settings: dict[str, Any]) -> None:
        s = self.settings = Settings(**settings)
        self.embedder = Embedder(s.embedding_model, device=s.embed_device, threads=1)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Live batching knobs: {"max_batch_size": 8, "batch_wait_timeout_s": 0.0}; a batch here
        is a number of callers' lists."""
        cfg = user_config or {}
        self.embed.set_max_batch_size(int(cfg.get("max_batch_size", 8)))
        self.embed.set_batch_wait_timeout_s(float(cfg.get("batch_wait_timeout_s", 0.0)))

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0)
    async def embed(self, lists: list[list[str]]) -> list[dict[str, Any]]:
        """{"model_hash": the model's fingerprint, "vectors": float32 rows} per list."""
        vectors = self.embedder.embed([q for queries in lists for q in queries])
        out, start = [], 0
        for queries in lists:
            out.append(
                {"model_hash": self.embedder.info.path_hash, "vectors": vectors[start : start + len(queries)]}
            )
            start += len(queries)
        return out

    async def embed_model(self, tuned: dict[str, Any], texts: list[str]) -> dict[str, Any]:
        """With a champion's fine-tuned embedder (Retriever.embedder), loaded on first use; not
        batched across callers (a tuned model serves one collection)."""
        embedder = await tuned_embedder(tuned, self.settings)
        vectors = await asyncio.to_thread(embedder.embed, texts)
        return {"model_hash": embedder.info.path_hash, "vectors": vectors}


async def tuned_embedder(tuned: dict[str, Any], settings: Settings) -> Embedder:
    """TUNED's embedder (Retriever.embedder), loaded off the event loop on first use (its folder, or
    its MLflow model fetched once into the model cache); the last two stay loaded."""
    path = await asyncio.to_thread(tuned_embedder_path, tuned, None, settings.model_cache)
    assert path is not None
    return await asyncio.to_thread(_load, path, settings.embed_device)


@lru_cache(maxsize=2)
def _load(path: str, device: str) -> Embedder:
    return Embedder(path, device=device, threads=1)
