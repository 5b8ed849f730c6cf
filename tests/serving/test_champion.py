"""Serving follows the collection's champion: a promotion (what `ragline optimize` writes) is picked
up by the running app within seconds, without a restart, and a demotion too."""

from __future__ import annotations

import time
from typing import Any

import httpx

from pipelines.settings import Settings
from pipelines.store import Store
from tests.conftest import E2E_COLLECTION


def _search_until(url: str, predicate: Any, timeout_s: float = 40.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        body = httpx.post(f"{url}/v1/search", json={"query": "volcano lava flour"}, timeout=60).json()
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
    store = Store(settings.lancedb_location)
    store.set_champion(
        E2E_COLLECTION, {"name": E2E_COLLECTION, "version": "8", "retrieval": {"mode": "vector"}}
    )
    try:
        active = store.active_index(E2E_COLLECTION)
        store.set_active_index(E2E_COLLECTION, active.name, Store.model_of(active))  # what embed does
        assert store.champion(E2E_COLLECTION)["version"] == "8"
    finally:
        store.set_champion(E2E_COLLECTION, None)
    assert store.champion(E2E_COLLECTION) is None
