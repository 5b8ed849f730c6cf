"""Refresh: ingest + embed as one flow run; this is what the schedule in prefect.yaml runs."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.embed import embed_flow
from flows.ingest import ingest_flow
from flows.optimize import build_variant
from pipelines.settings import get_settings
from pipelines.store import Store
from pipelines.variants import Chunking


@flow(name="refresh", log_prints=True)
def refresh_flow(
    sources: list[str], collection: str, format: str = "auto", model: str | None = None
) -> dict[str, Any]:
    ingest = ingest_flow(sources, collection, format)
    embed = embed_flow(collection, model)
    result = {"ingest": ingest, "embed": embed}
    champion = Store(get_settings().lancedb_location).champion(collection) or {}
    if champion.get("index_table"):
        # The champion was chosen with its own chunking: bring that index up to date too.
        result["champion_variant"] = build_variant(collection, Chunking(**champion["chunking"]))
    return result
