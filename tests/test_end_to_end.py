"""End to end, all real: the refresh flow (Prefect) ingests and embeds (Ray Data → LanceDB) a small
corpus, the Serve app answers over HTTP with the packaged models, and the sources point at the
document the question was written about."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import httpx
import pytest

from pipelines.generation import clean_answer
from pipelines.settings import Settings
from tests.conftest import E2E_COLLECTION as COLLECTION
from tests.conftest import free_port

pytestmark = pytest.mark.e2e


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
    _assert_cited_by_construction(body)


def _assert_cited_by_construction(body: dict) -> None:  # type: ignore[type-arg]
    """Every sentence shown cites a source that exists; what no source supports is not shown."""
    assert body["grounded"] is True and body["refused"] is False, body
    dropped = ("unsupported", "redundant", "trimmed")
    shown = [c for c in body["citations"] if c["status"] not in dropped]
    assert shown, body
    for c in shown:
        assert c["sources"] and all(1 <= n <= len(body["sources"]) for n in c["sources"]), c
        assert c["sentence"] in body["answer"] and all(f"[{n}]" in c["sentence"] for n in c["sources"])
    for c in body["citations"]:
        if c["status"] in dropped:
            assert c["sentence"] not in body["answer"]


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


def _events(url: str, body: dict) -> list[tuple[str, dict]]:
    events = []
    with httpx.stream("POST", url, json=body, timeout=300) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind:
                events.append((kind, json.loads(line.removeprefix("data: "))))
    return events


def test_streaming_chat_sends_tokens_then_sources(service: str) -> None:
    events = _events(
        f"{service}/v1/chat", {"message": "What does a Fresnel lens do?", "stream": True, "max_tokens": 40}
    )
    kinds = [k for k, _ in events]
    assert kinds.count("token") >= 2 and kinds[-1] == "done" and "error" not in kinds
    done = events[-1][1]
    assert done["sources"] and done["message_id"] and done["degraded"] is False
    assert done["usage"]["completion_tokens"] > 0
    streamed = "".join(d["text"] for k, d in events if k == "token")
    words = lambda text: set(re.findall(r"[a-z]+", text.lower()))  # noqa: E731
    # The final answer is the stream cleaned and citation-checked: sentences may be dropped and
    # citations added, nothing else written.
    assert done["answer"] and words(done["answer"]) <= words(clean_answer(streamed))
    _assert_cited_by_construction(done)


def test_sessions_condense_follow_ups_and_take_feedback(service: str, settings: Settings) -> None:
    from serving.sessions import SessionStore

    first = httpx.post(
        f"{service}/v1/chat",
        json={"message": "How do I keep a sourdough starter alive?", "session_id": "s-e2e", "max_tokens": 30},
        timeout=300,
    ).json()
    follow = httpx.post(
        f"{service}/v1/chat",
        json={
            "message": "How often should I feed it in the fridge?",
            "session_id": "s-e2e",
            "max_tokens": 30,
        },
        timeout=300,
    ).json()
    assert follow["session_id"] == "s-e2e"
    assert follow["sources"][0]["title"] == "Keeping a Sourdough Starter Alive"  # "it" was resolved
    history = SessionStore(settings.sessions_database).history("s-e2e", turns=5)
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]

    ok = httpx.post(
        f"{service}/v1/feedback",
        json={"message_id": first["message_id"], "rating": 1, "comment": "helpful"},
        timeout=30,
    )
    assert ok.status_code == 200 and ok.json()["rating"] == 1
    assert (
        SessionStore(settings.sessions_database).feedback_for(first["message_id"])[0]["comment"] == "helpful"
    )
    missing = httpx.post(f"{service}/v1/feedback", json={"message_id": "nope", "rating": 1}, timeout=30)
    assert missing.status_code == 404 and missing.json()["error"]["message"]


def test_the_openai_client_library_works_against_the_service(service: str) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=f"{service}/v1", api_key="not-needed")
    reply = client.chat.completions.create(
        model=COLLECTION,
        messages=[{"role": "user", "content": "How are green and black tea made?"}],
        max_tokens=40,
    )
    assert reply.choices[0].message.content
    stream = client.chat.completions.create(
        model=COLLECTION,
        messages=[{"role": "user", "content": "What is a shield volcano?"}],
        max_tokens=30,
        stream=True,
    )
    parts = [c.choices[0].delta.content or "" for c in stream if c.choices]
    assert len(parts) >= 2 and "".join(parts).strip()
    assert COLLECTION in {m.id for m in client.models.list().data}


def test_openai_messages_may_be_parts_and_carry_the_conversation(service: str) -> None:
    """What OpenAI clients send: content as a list of text parts, and the earlier turns, which
    resolve a follow-up as a session's history would."""
    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": "How do I keep a sourdough starter alive?"},
        {"role": "assistant", "content": None},  # a turn that only called tools
        {"role": "user", "content": [{"type": "text", "text": "And how often does it need feeding?"}]},
    ]
    r = httpx.post(
        f"{service}/v1/chat/completions",
        json={"model": COLLECTION, "messages": messages, "max_tokens": 8},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    assert r.json()["sources"][0]["title"] == "Keeping a Sourdough Starter Alive"  # "it" was resolved
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    body = {"model": COLLECTION, "messages": [image]}
    r = httpx.post(f"{service}/v1/chat/completions", json=body, timeout=60)
    assert r.status_code == 422 and "only text content parts" in r.json()["error"]["message"]
    empty = {"model": COLLECTION, "messages": [{"role": "user", "content": []}]}
    r = httpx.post(f"{service}/v1/chat/completions", json=empty, timeout=60)
    assert r.status_code == 400 and r.json()["error"]["message"].startswith("message: String should have")


def _second_app(service: str, settings: Settings, name: str, **updates: object) -> str:
    """Another app beside the main one, on the same HTTP port under /NAME, holding no CPUs."""
    from serving import runner

    port = int(service.rsplit(":", 1)[1])
    app_settings = settings.model_copy(update={"default_collection": COLLECTION, "port": port, **updates})
    zero = {"ray_actor_options": {"num_cpus": 0}}  # the main app holds the CPUs
    names = ("ChatIngress", "QueryEmbedder", "RetrieverService", "GeneratorService")
    return runner.start(app_settings, {n: zero for n in names}, name=name, route_prefix=f"/{name}")


@pytest.fixture(scope="module")
def broken_generator_service(service: str, settings: Settings) -> Iterator[str]:
    """A second app whose generator really fails: an OpenAI-compatible server that is not there."""
    from ray import serve

    yield _second_app(
        service, settings, "broken", generator="openai", openai_base_url=f"http://127.0.0.1:{free_port()}/v1"
    )
    serve.delete("broken")


def test_the_openai_compatible_backend_against_a_real_server(service: str, settings: Settings) -> None:
    """Generation through RAGLINE_GENERATOR=openai, served by a real OpenAI-compatible server:
    the main app's /v1/chat/completions."""
    from ray import serve

    relay = _second_app(
        service,
        settings,
        "relay",
        generator="openai",
        openai_base_url=f"{service}/v1",
        generator_model=COLLECTION,
    )
    try:
        r = httpx.post(
            f"{relay}/v1/chat", json={"message": "How is black tea made?", "max_tokens": 40}, timeout=300
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is False, body["degraded_reason"]
        assert body["answer"] and body["model"] == COLLECTION
        assert body["usage"]["completion_tokens"] > 0
    finally:
        serve.delete("relay")


def test_a_failing_generator_degrades_to_passages(broken_generator_service: str) -> None:
    r = httpx.post(
        f"{broken_generator_service}/v1/chat", json={"message": "What is a Fresnel lens?"}, timeout=120
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is True and "failed" in body["degraded_reason"]
    assert body["sources"] and "Fresnel" in body["answer"]
    events = _events(
        f"{broken_generator_service}/v1/chat", {"message": "What is a Fresnel lens?", "stream": True}
    )
    assert events[-1][0] == "done" and events[-1][1]["degraded"] is True


def test_health_readiness_and_models(service: str) -> None:
    assert httpx.get(f"{service}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{service}/readyz", timeout=60)
    assert ready.status_code == 200 and ready.json()["index"]["table"].startswith(COLLECTION)
    models = httpx.get(f"{service}/v1/models").json()
    assert COLLECTION in {m["id"] for m in models["data"]}


def test_retrieval_config_is_hot_reloaded_without_a_restart(service: str, settings: Settings) -> None:
    from serving import runner

    serving_settings = settings.model_copy(
        update={"default_collection": COLLECTION, "port": int(service.rsplit(":", 1)[1])}
    )
    before = httpx.post(f"{service}/v1/search", json={"query": "volcano lava"}, timeout=60).json()
    assert len(before["results"]) == serving_settings.top_k
    runner.update_retrieval(serving_settings, {"mode": "text", "top_k": 2})
    try:
        after = httpx.post(
            f"{service}/v1/chat", json={"message": "volcano lava", "max_tokens": 5}, timeout=300
        )
        assert "/text/" in after.json()["config_version"]
        many = {"query": "water flour tea lens chain lava"}  # words found in several documents
        assert len(httpx.post(f"{service}/v1/search", json=many, timeout=60).json()["results"]) == 2
    finally:
        runner.update_retrieval(serving_settings, {})  # back to the settings' defaults
