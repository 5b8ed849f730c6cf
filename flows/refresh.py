"""Refresh: ingest + embed as one flow run; this is what the schedule in prefect.yaml runs."""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.embed import embed_flow
from flows.ingest import ingest_flow


@flow(name="refresh", log_prints=True)
def refresh_flow(
    sources: list[str], collection: str, format: str = "auto", model: str | None = None
) -> dict[str, Any]:
    ingest = ingest_flow(sources, collection, format)
    embed = embed_flow(collection, model)
    return {"ingest": ingest, "embed": embed}
