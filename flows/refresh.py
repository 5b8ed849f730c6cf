"""Refresh: ingest + embed as one flow run; this is what the schedule in prefect.yaml runs."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.embed import embed_flow
from flows.finetune import update_tuned_index
from flows.ingest import ingest_flow
from flows.optimize import build_variant
from flows.policy import REFRESH_LOCK_WAIT_S, REFRESH_TIMEOUT_S, collection_lock
from pipelines.optimization.variants import Chunking
from pipelines.settings import get_settings
from pipelines.store import Store


@flow(name="refresh", log_prints=True, timeout_seconds=REFRESH_TIMEOUT_S)
def refresh_flow(
    sources: list[str],
    collection: str,
    format: str = "auto",
    model: str | None = None,
    lock_wait_s: float = REFRESH_LOCK_WAIT_S,
) -> dict[str, Any]:
    """Ingest SOURCES into COLLECTION and embed what changed. One refresh per collection at a time
    (scheduled or by hand): a second one waits up to LOCK_WAIT_S, then fails saying why."""
    with collection_lock("refresh", collection, lock_wait_s):
        ingest = ingest_flow(sources, collection, format)
        embed = embed_flow(collection, model)
        result = {"ingest": ingest, "embed": embed}
        champion = Store.from_settings(get_settings()).champion(collection) or {}
        if champion.get("index_table"):
            # The champion was chosen with its own chunking: bring that index up to date too.
            target = build_variant(collection, Chunking(**champion["chunking"]))
            result["champion_variant"] = target
            if target != collection and update_tuned_index(collection, target):
                result["champion_table"] = champion["index_table"]
    return result
