"""The embedder (one sentence-transformers model, local weights only) and the Ray Data batch job
that embeds a collection's new chunks into its LanceDB index table."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.index.indexes import has_fts, update_indexes
from pipelines.models import MINILM_NAME, default_embedding_model_path, offline_env, resolve_embedding_model
from pipelines.settings import Settings
from pipelines.store import ModelInfo, Store, sql_in

log = logging.getLogger(__name__)
INDEX_COLUMNS = ["id", "doc_id", "title", "text", "chunk_index", "source_uri"]


def model_fingerprint(path: Path) -> str:
    """Stable across machines: the model's config files and the sizes of its weight files."""
    h = hashlib.sha256()
    for f in sorted(path.rglob("*")):
        if not f.is_file():
            continue
        rel = f.relative_to(path).as_posix()
        if f.suffix in (".json", ".txt") and f.stat().st_size < 1_000_000:
            h.update(rel.encode() + f.read_bytes())
        elif f.suffix in (".safetensors", ".bin"):
            h.update(f"{rel}:{f.stat().st_size}".encode())
    return h.hexdigest()


def model_name(path: Path) -> str:
    """The packaged MiniLM's name, a trained model's own (its ragline.json: the same in its MLflow
    copy, whatever the folder is called there), else the folder's name."""
    try:
        if path == default_embedding_model_path():
            return MINILM_NAME
    except Exception:  # the packaged model is optional when a path is given
        pass
    lineage = path / "ragline.json"
    if lineage.is_file():
        name = json.loads(lineage.read_text()).get("name")
        if isinstance(name, str) and name:
            return name
    return path.name


class Embedder:
    """Encodes texts into L2-normalised float32 vectors (cosine similarity = dot product)."""

    def __init__(
        self,
        model_path: str | Path | None = None,
        device: str = "auto",
        batch_size: int = 64,
        threads: int | None = None,
    ) -> None:
        offline_env()
        import torch
        from sentence_transformers import SentenceTransformer

        if threads:
            torch.set_num_threads(threads)
        self.model_path = resolve_embedding_model(model_path)
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(self.model_path), device=self.device, local_files_only=True)
        if self.device == "cuda":
            self.model.half()  # fp16 on GPU: ~2x throughput, same ranking
        get_dim = (
            getattr(self.model, "get_embedding_dimension", None)
            or self.model.get_sentence_embedding_dimension
        )
        dim = get_dim()
        if not dim:
            raise ValueError(f"model at {self.model_path} does not report an embedding dimension")
        self.info = ModelInfo(model_name(self.model_path), model_fingerprint(self.model_path), int(dim))

    def embed(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_path": str(self.model_path),
            "device": self.device,
            "batch_size": self.batch_size,
            "model": self.info.name,
            "dim": self.info.dim,
        }


class EmbedBatch:
    """Ray Data actor: loads the model once, then embeds Arrow batches."""

    def __init__(self, model_path: str, device: str, batch_size: int, threads: int) -> None:
        self.embedder = Embedder(model_path, device=device, batch_size=batch_size, threads=threads)

    def __call__(self, batch: pa.Table) -> pa.Table:
        vectors = self.embedder.embed(batch.column("text").to_pylist())
        dim = vectors.shape[1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1), pa.float32()), dim)
        return batch.select(INDEX_COLUMNS).append_column("vector", column)


@dataclass
class EmbedResult:
    collection: str
    model: str
    embedded: int
    skipped: int
    deleted: int
    seconds: float
    table: str
    table_version: int
    indexes: dict[str, Any]
    rejected: pa.Table | None = None  # rows the batch check refused, with their vectors
    pool: str = ""  # how the actor pool was sized (PoolPlan), when anything was embedded

    @property
    def quarantined(self) -> int:
        return self.rejected.num_rows if self.rejected is not None else 0

    @property
    def rows_per_s(self) -> float:
        return round(self.embedded / self.seconds, 1) if self.embedded and self.seconds > 0 else 0.0


def embed_options(settings: Settings, model_path: str | Path | None = None) -> dict[str, Any]:
    """`embed_collection`'s keyword arguments as the settings give them (MODEL_PATH: another model)."""
    return {
        "model_path": model_path or settings.embedding_model,
        "device": settings.embed_device,
        "batch_size": settings.embed_batch_size,
        "actors": settings.embed_actors,
        "threads_per_actor": settings.embed_threads_per_actor,
        "gpus_per_actor": settings.embed_gpus_per_actor,
        "retain": settings.index_retention,
    }


Progress = Callable[[int, int], None]
# Takes a batch of index rows, returns (rows to write, rows rejected); the flow passes the
# index-rows data contract here, so the library needs no contract code.
BatchCheck = Callable[[pa.Table], tuple[pa.Table, pa.Table]]


def embed_collection(
    store: Store,
    collection: str,
    *,
    model_path: str | Path | None = None,
    device: str = "auto",
    batch_size: int = 64,
    actors: int = 1,
    threads_per_actor: int | None = None,
    gpus_per_actor: float = 1.0,
    write_every: int = 256,
    on_progress: Progress | None = None,
    check: BatchCheck | None = None,
    retain: timedelta | None = None,
    activate: bool = True,
) -> EmbedResult:
    """Embed the chunks that have no vector for this model yet; delete vectors of removed chunks.

    Vectors are written in batches as they stream back; each write is one atomic commit of rows
    that were absent when the run started, so a run killed half-way and started again embeds only
    what is missing and never duplicates a row. Rows that `check` rejects are not written and are
    returned in `EmbedResult.rejected` (the flow quarantines them). Stale vectors are deleted and
    the collection's active index is switched only after every new vector is written, so a run that
    fails leaves the index serving what it served.

    ACTIVATE=False builds the table without pointing the collection at it (a fine-tuned model's
    trial: it serves only once promoted as part of a champion).

    `actors` is the most actors the pool grows to; each is sized to fit on one node
    (`pool_plan`), so the pool grows with the nodes of a cluster.
    """
    import ray

    path = resolve_embedding_model(model_path)
    info = ModelInfo(model_name(path), model_fingerprint(path), _dimension(path))
    chunks = store.chunks(collection).to_arrow().select(INDEX_COLUMNS)
    index = store.index_table(collection, info)
    have = index.to_arrow().column("id") if index.count_rows() else pa.array([], pa.string())
    todo = chunks.filter(pc.invert(pc.is_in(chunks.column("id"), value_set=have)))
    stale = pc.filter(have, pc.invert(pc.is_in(have, value_set=chunks.column("id")))).to_pylist()

    started = time.perf_counter()
    written = 0
    rejected: list[pa.Table] = []
    plan: PoolPlan | None = None

    def flush(pending: list[pa.Table]) -> None:
        nonlocal written
        if not pending:
            return
        table = pa.concat_tables(pending)
        pending.clear()
        if check is not None:
            table, bad = check(table)
            rejected.append(bad)
        if table.num_rows:
            index.add(table.cast(index.schema))
            written += table.num_rows

    def processed() -> int:
        return written + sum(t.num_rows for t in rejected)

    if todo.num_rows:
        # Several blocks, so that vectors stream back (and get written) while the rest is embedded.
        blocks = [todo.slice(i, write_every) for i in range(0, todo.num_rows, write_every)]
        plan = pool_plan(min(actors, len(blocks)), device, threads_per_actor, gpus_per_actor)
        log.info("embedding %d chunks: %s", todo.num_rows, plan)
        # from_blocks computes block metadata here; from_arrow runs a 1-CPU task per block, which
        # never gets scheduled while a running Serve app holds most of the CPUs.
        ds = ray.data.from_blocks(blocks).map_batches(
            EmbedBatch,
            fn_constructor_kwargs={
                "model_path": str(path),
                "device": "cuda" if plan.gpus else "cpu",
                "batch_size": batch_size,
                "threads": plan.threads,
            },
            batch_size=batch_size * 4,
            batch_format="pyarrow",
            compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=plan.max_actors, initial_size=plan.initial_actors
            ),
            num_cpus=plan.cpus,
            num_gpus=plan.gpus,
        )
        pending: list[pa.Table] = []
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            pending.append(batch)
            # Commits of WRITE_EVERY rows however Ray Data bundles the blocks it streams back: a
            # run killed after a write has kept that write and no more.
            while sum(b.num_rows for b in pending) >= write_every:
                table = pa.concat_tables(pending)
                rest = table.slice(write_every)
                pending[:] = [rest] if rest.num_rows else []
                flush([table.slice(0, write_every)])
                if on_progress:
                    on_progress(processed(), todo.num_rows)
        flush(pending)
        if on_progress:
            on_progress(processed(), todo.num_rows)
    seconds = time.perf_counter() - started
    # Vectors of removed chunks go only once the new ones are in: a run that fails half-way leaves
    # the index serving everything it served before (plus what it added).
    for i in range(0, len(stale), 500):
        index.delete(sql_in("id", stale[i : i + 500]))
    # New rows go into the indexes incrementally (and small fragments are compacted); versions
    # older than RETAIN are removed, the latest always stays.
    changed = written or stale or not has_fts(index)
    indexes = update_indexes(index, retain) if changed else {"rows": index.count_rows()}
    if activate:
        store.set_active_index(collection, index.name, info)
    return EmbedResult(
        collection=collection,
        model=info.name,
        embedded=written,
        skipped=chunks.num_rows - todo.num_rows,
        deleted=len(stale),
        seconds=seconds,
        table=index.name,
        table_version=index.version,
        indexes=indexes,
        rejected=pa.concat_tables(rejected) if rejected else None,
        pool=str(plan or ""),
    )


@dataclass(frozen=True)
class PoolPlan:
    """How the embedding actor pool is sized: per actor, what one node can hold."""

    max_actors: int
    initial_actors: int
    threads: int  # torch threads per actor
    cpus: float  # logical CPUs asked of Ray per actor
    gpus: float

    def __str__(self) -> str:
        each = f"{self.gpus:g} GPU" if self.gpus else f"{self.threads} threads, {self.cpus:g} CPU"
        return f"{self.initial_actors}-{self.max_actors} actors of {each}"


def pool_plan(
    actors: int, device: str = "auto", threads: int | None = None, gpus_per_actor: float = 1.0
) -> PoolPlan:
    """Size one actor by the largest node of the running Ray (never by the cluster's sum: a
    3-CPU actor never fits on a 1-CPU head plus a 2-CPU worker) and the pool by how many such
    actors the nodes hold; Ray Data grows the pool up to `actors` as nodes join."""
    import ray

    from pipelines.runtime import node_resources

    actors = max(1, actors)
    nodes = node_resources()
    node_gpus = max((n.get("GPU", 0.0) for n in nodes), default=0.0)
    if device in ("auto", "cuda") and node_gpus > 0:
        gpus = min(gpus_per_actor, node_gpus)
        fits = max(1, min(actors, sum(int(n.get("GPU", 0.0) // gpus) for n in nodes)))
        return PoolPlan(actors, fits, 1, 1.0, gpus)
    node_cpus = max(1, int(max((n.get("CPU", 0.0) for n in nodes), default=1.0)))
    threads = min(threads or max(1, node_cpus // min(actors, node_cpus)), node_cpus)
    # Ask Ray for what is free rather than whole cores: a running Serve app holds fractions of
    # the CPUs, and actors that wait for whole ones would never start beside it.
    free = float(ray.available_resources().get("CPU", 0.0))
    cpus = round(max(0.1, min(float(threads), free / actors)), 3)
    fits = max(1, min(actors, sum(int(n.get("CPU", 0.0) // cpus) for n in nodes)))
    return PoolPlan(actors, fits, threads, cpus, 0.0)


def _dimension(path: Path) -> int:
    """The output dimension without loading the weights (read from the model's config files)."""

    for name in ("config_sentence_transformers.json", "1_Pooling/config.json", "config.json"):
        f = path / name
        if f.is_file():
            cfg = json.loads(f.read_text())
            for key in ("word_embedding_dimension", "hidden_size", "dim"):
                if isinstance(cfg.get(key), int):
                    return cfg[key]
    raise ValueError(f"cannot tell the embedding dimension of {path}")
