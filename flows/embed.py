"""Embed: a collection's new chunks → Ray Data actor pool → LanceDB index table → indexes."""

from __future__ import annotations

from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from data_contracts import check_index_rows
from flows.policy import EMBED_TIMEOUT_S, TRANSIENT_RETRIES
from pipelines.index.embedding import embed_collection, embed_options
from pipelines.ingest.tables import quarantine_frame, write_quarantine
from pipelines.runtime import ensure_ray
from pipelines.settings import get_settings, validate_collection
from pipelines.store import Store


# A retry resumes: only chunks without a vector are embedded again.
@task(name="embed-chunks", cache_policy=NO_CACHE, timeout_seconds=EMBED_TIMEOUT_S, **TRANSIENT_RETRIES)
def embed_chunks(collection: str, model: str | None) -> dict[str, Any]:
    settings = get_settings()
    ensure_ray(settings)
    progress = create_progress_artifact(
        0.0, key=f"{collection}-embed-progress", description="rows embedded / rows to embed"
    )
    log = get_run_logger()

    def on_progress(done: int, total: int) -> None:
        update_progress_artifact(progress, 100.0 * done / max(1, total))
        log.info("embedded %d / %d chunks", done, total)

    store = Store.from_settings(settings)
    result = embed_collection(
        store,
        collection,
        **embed_options(settings, model),
        on_progress=on_progress,
        check=check_index_rows,
    )
    if result.rejected is not None and result.rejected.num_rows:
        rows = pl.from_arrow(result.rejected.drop_columns(["vector"]))
        assert isinstance(rows, pl.DataFrame)
        write_quarantine(store, collection, quarantine_frame(rows, "index", str(flow_run.id or "local")))
        log.warning("quarantined %d index rows that broke the index-rows contract", result.rejected.num_rows)
    update_progress_artifact(progress, 100.0)
    return {
        "collection": collection,
        "model": result.model,
        "embedded": result.embedded,
        "skipped": result.skipped,
        "deleted": result.deleted,
        "quarantined": result.quarantined,
        "rows_per_s": result.rows_per_s,
        "pool": result.pool,
        "table": result.table,
        "table_version": result.table_version,
        "indexes": result.indexes,
    }


@flow(name="embed", log_prints=True, timeout_seconds=EMBED_TIMEOUT_S)
def embed_flow(collection: str, model: str | None = None) -> dict[str, Any]:
    """Embed COLLECTION's chunks that have no vector for MODEL yet (default: the packaged MiniLM)."""
    validate_collection(collection)
    if not Store.from_settings(get_settings()).has(collection, "chunks"):
        # Fail here with the reason, not later with an empty index marked active.
        raise ValueError(
            f"collection {collection!r} has no chunks: run `ragline ingest ... -c {collection}` first"
        )
    summary = embed_chunks(collection, model)
    if (Store.from_settings(get_settings()).champion(collection) or {}).get("embedder"):
        from flows.finetune import update_tuned_index  # lazy: MLflow and Optuna load only for it

        # the champion's fine-tuned model embeds the new chunks into its table too
        summary["champion_table"] = update_tuned_index(collection, collection)
    summary["flow_run_id"] = str(flow_run.id or "local")
    create_table_artifact(
        [{k: str(v) for k, v in summary.items()}],
        key=f"{collection}-embed",
        description="Embedding run: rows, throughput, model, table version",
    )
    return summary
