"""Serving follows the collection's champion: a promotion (what `ragline optimize` writes) is picked
up by the running app within seconds, without a restart, and a demotion too."""

from __future__ import annotations

import time
from typing import Any

import httpx

from benchmarks.corpus import chunk_frame, passages
from pipelines.index import embed_collection
from pipelines.ingest import tables as ingest
from pipelines.settings import Settings
from pipelines.store import Store
from tests.conftest import E2E_COLLECTION

CHAMP = "champion-embed"
NEW_TEXT = "Quillon the harbour zebra was fed oats by the lighthouse keeper every evening at dusk."


def _search_until(
    url: str, predicate: Any, query: str = "volcano lava flour", collection: str | None = None
) -> dict[str, Any]:
    deadline = time.monotonic() + 40.0
    payload: dict[str, Any] = {"query": query} | ({"collection": collection} if collection else {})
    while True:
        body = httpx.post(f"{url}/v1/search", json=payload, timeout=60).json()
        if predicate(body) or time.monotonic() > deadline:
            return body
        time.sleep(1.0)


def test_a_promoted_champion_is_served_without_a_restart(service: str, settings: Settings) -> None:
    store = Store(settings.lancedb_location)
    store.set_champion(
        E2E_COLLECTION, {"name": E2E_COLLECTION, "version": "7", "retrieval": {"mode": "text", "top_k": 2}}
    )
    try:
        body = _search_until(service, lambda b: b["mode"] == "text")
        assert body["mode"] == "text" and len(body["results"]) == 2
    finally:
        store.set_champion(E2E_COLLECTION, None)
    body = _search_until(service, lambda b: b["mode"] == "hybrid")
    assert body["mode"] == "hybrid" and len(body["results"]) == settings.top_k


def test_the_champion_survives_a_new_embed_run(settings: Settings, service: str) -> None:
    """A real embed run (new chunks embedded, the active index re-set, as `ragline embed` does) keeps
    the champion, and the running app serves the new rows with the champion's config."""
    store = Store(settings.lancedb_location)
    ingest.write_chunks(store, CHAMP, [], chunk_frame(passages(12, max_chars=300), prefix="first"))
    embed_collection(store, CHAMP)
    store.set_champion(CHAMP, {"name": CHAMP, "version": "8", "retrieval": {"mode": "vector", "top_k": 3}})
    try:
        body = _search_until(service, lambda b: b["mode"] == "vector", collection=CHAMP)
        assert body["mode"] == "vector" and len(body["results"]) == 3

        ingest.write_chunks(store, CHAMP, [], chunk_frame([NEW_TEXT], prefix="second"))
        run = embed_collection(store, CHAMP)
        assert (run.embedded, run.skipped) == (1, 12)
        assert store.champion(CHAMP)["version"] == "8"  # the embed run left the champion alone

        body = _search_until(
            service, lambda b: b["results"][0]["id"] == "second0", query=NEW_TEXT, collection=CHAMP
        )
        assert body["results"][0]["id"] == "second0"  # the new row is served ...
        assert body["mode"] == "vector" and len(body["results"]) == 3  # ... with the champion's config
    finally:
        store.set_champion(CHAMP, None)
    assert store.champion(CHAMP) is None
