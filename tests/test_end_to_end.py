"""End to end, all real: the refresh flow (Prefect) ingests and embeds (Ray Data → LanceDB) a small
corpus, the Serve app answers over HTTP with the packaged models, and the sources point at the
document the question was written about."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pipelines.settings import Settings

pytestmark = pytest.mark.e2e
COLLECTION = "e2e"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def service(settings: Settings, corpus_dir: Path, ray_session: None) -> Iterator[str]:
    from flows.refresh import refresh_flow
    from serving import runner

    result = refresh_flow([str(corpus_dir)], COLLECTION)
    assert result["ingest"]["quarantined"] == 0
    assert result["embed"]["embedded"] == result["ingest"]["chunks"] > 0
    url = runner.start(settings.model_copy(update={"default_collection": COLLECTION, "port": _free_port()}))
    yield url
    runner.stop(shutdown_ray=False)


def test_chat_answers_with_sources_from_the_right_document(service: str) -> None:
    r = httpx.post(
        f"{service}/v1/chat",
        json={"message": "How often should I feed a sourdough starter kept in the refrigerator?"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is False
    assert body["answer"].strip()
    assert body["sources"], body
    assert body["sources"][0]["title"] == "Keeping a Sourdough Starter Alive"
    assert body["usage"]["completion_tokens"] > 0 and body["usage"]["prompt_tokens"] > 0
    assert body["timings"]["retrieval_ms"] > 0 and body["timings"]["generation_ms"] > 0
    assert body["config_version"].startswith(f"{COLLECTION}__index_")
    assert body["session_id"]


@pytest.mark.parametrize("mode", ["vector", "text", "hybrid"])
def test_search_modes_find_the_document(service: str, mode: str) -> None:
    r = httpx.post(
        f"{service}/v1/search",
        json={"query": "shield volcano basaltic lava eruptions", "mode": mode, "top_k": 3},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results[0]["title"] == "Shield volcanoes and stratovolcanoes"


def test_search_filters(service: str) -> None:
    hits = httpx.post(f"{service}/v1/search", json={"query": "chain", "top_k": 10}, timeout=60).json()[
        "results"
    ]
    doc = next(h["doc_id"] for h in hits if h["title"] == "Bicycle Chain Maintenance")
    r = httpx.post(
        f"{service}/v1/search", json={"query": "lighthouse lens", "filters": {"doc_id": doc}}, timeout=60
    )
    assert r.status_code == 200
    assert {h["doc_id"] for h in r.json()["results"]} == {doc}


def test_openai_shape(service: str) -> None:
    r = httpx.post(
        f"{service}/v1/chat/completions",
        json={
            "model": COLLECTION,
            "messages": [{"role": "user", "content": "What is a Fresnel lens?"}],
            "max_tokens": 40,
        },
        timeout=300,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["content"]
    assert any("Lighthouse" in s["title"] for s in body["sources"])


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"message": ""}, 422, "invalid_request"),
        ({"message": "hi", "top_k": 0}, 422, "invalid_request"),
        ({"message": "hi", "collection": "no-such-collection"}, 404, "collection_not_found"),
        ({"message": "hi", "collection": "Bad Name!"}, 400, "bad_request"),
        ({"message": "hi", "filters": {"text; drop": 1}}, 400, "bad_request"),
    ],
)
def test_bad_requests_get_a_json_reason(service: str, payload: dict, status: int, code: str) -> None:
    r = httpx.post(f"{service}/v1/chat", json=payload, timeout=60)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert r.json()["error"]["message"]


def test_oversized_and_malformed_bodies(service: str) -> None:
    r = httpx.post(
        f"{service}/v1/chat",
        content=b'{"message": "' + b"x" * 100_000 + b'"}',
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
    r = httpx.post(
        f"{service}/v1/chat", content=b"{not json", headers={"content-type": "application/json"}, timeout=60
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_health_readiness_and_models(service: str) -> None:
    assert httpx.get(f"{service}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{service}/readyz", timeout=60)
    assert ready.status_code == 200 and ready.json()["index"]["table"].startswith(COLLECTION)
    models = httpx.get(f"{service}/v1/models").json()
    assert COLLECTION in {m["id"] for m in models["data"]}
