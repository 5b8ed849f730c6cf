"""Operations of the real Serve app over HTTP: Prometheus metrics, request ids in headers, answers and
JSON log lines, and MLflow traces of chat requests when tracing is on."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines.settings import Settings
from serving.observability import request_log
from serving.tracing import EXPERIMENT, REQUEST_ID_TAG
from tests.conftest import E2E_COLLECTION as COLLECTION

pytestmark = pytest.mark.e2e

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _metrics(url: str) -> Samples:
    r = httpx.get(f"{url}/metrics", timeout=30)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _wait_for(find: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    """Polls until FIND returns something: replicas write logs and traces after the response."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = find()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"no {what} after {timeout_s:.0f} s")


def test_metrics_count_requests_stages_tokens_and_caches(service: str) -> None:
    before = _metrics(service)
    for query in ("shield volcano lava", "bicycle chain lubrication"):
        assert httpx.post(f"{service}/v1/search", json={"query": query}, timeout=60).status_code == 200
    chat = httpx.post(
        f"{service}/v1/chat", json={"message": "What is a Fresnel lens?", "max_tokens": 8}, timeout=300
    )
    assert chat.status_code == 200 and chat.json()["degraded"] is False
    assert httpx.post(f"{service}/v1/search", json={"query": "x", "top_k": 0}, timeout=60).status_code == 422
    after = _metrics(service)

    def delta(name: str, **labels: str) -> float:
        return _value(after, name, **labels) - _value(before, name, **labels)

    search, chat_route = {"route": "/v1/search"}, {"route": "/v1/chat"}
    assert delta("ragline_requests_total", method="POST", status="200", **search) == 2
    assert delta("ragline_requests_total", method="POST", status="422", **search) == 1
    assert delta("ragline_requests_total", method="POST", status="200", **chat_route) == 1
    assert delta("ragline_request_latency_seconds_count", **search) == 3
    assert delta("ragline_request_latency_seconds_bucket", le="+Inf", **chat_route) == 1
    assert delta("ragline_request_latency_seconds_sum", **chat_route) > 0
    for stage in ("embed", "retrieve"):  # two searches and one chat went through both
        assert delta("ragline_stage_latency_seconds_count", stage=stage) == 3
        assert delta("ragline_stage_latency_seconds_sum", stage=stage) > 0
    assert delta("ragline_stage_latency_seconds_count", stage="generate") == 1
    usage = chat.json()["usage"]
    assert delta("ragline_tokens_total", kind="prompt") == usage["prompt_tokens"] > 0
    assert delta("ragline_tokens_total", kind="completion") == usage["completion_tokens"] > 0
    assert delta("ragline_degraded_answers_total") == 0
    assert ("ragline_degraded_answers_total", frozenset()) in after
    # the retriever service reused its Retriever
    assert delta("ragline_cache_requests_total", cache="retriever", result="hit") >= 2
    assert _value(after, "ragline_cache_requests_total", cache="retriever", result="miss") >= 1
    assert _value(after, "ragline_requests_in_flight") == 1  # this very /metrics request


def test_request_ids_in_headers_answers_and_log_lines(service: str, settings: Settings) -> None:
    body = {"message": "How should a bicycle chain be lubricated?", "max_tokens": 8}
    made = httpx.post(f"{service}/v1/chat", json=body, timeout=300)
    assert made.status_code == 200
    rid = made.headers["x-request-id"]
    assert rid and "," not in rid and made.json()["request_id"] == rid

    given = httpx.post(f"{service}/v1/chat", json=body, headers={"X-Request-ID": "client-7.a:b"}, timeout=300)
    assert given.headers["x-request-id"] == "client-7.a:b" == given.json()["request_id"]

    insane = "x" * 300
    replaced = httpx.post(f"{service}/v1/chat", json=body, headers={"X-Request-ID": insane}, timeout=300)
    own = replaced.json()["request_id"]
    assert own and own != insane and own in replaced.headers.get_list("x-request-id")

    with httpx.stream("POST", f"{service}/v1/chat", json={**body, "stream": True}, timeout=300) as r:
        done = [
            json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ") and "answer" in line
        ]
        assert done[-1]["request_id"] == r.headers["x-request-id"]

    log = request_log(settings)

    def line_of(request_id: str) -> dict[str, Any] | None:
        lines = log.read_text().splitlines() if log.exists() else []
        return next((json.loads(x) for x in lines if f'"{request_id}"' in x), None)

    line = _wait_for(lambda: line_of(rid), f"log line with {rid} in {log}")
    assert line["route"] == "/v1/chat" and line["method"] == "POST" and line["status"] == 200
    assert line["collection"] == COLLECTION and line["latency_ms"] > 0 and line["degraded"] is False
    assert _wait_for(lambda: line_of("client-7.a:b"), "log line of the client's id")["status"] == 200
    search = httpx.post(f"{service}/v1/search", json={"query": "x", "collection": "Bad!"}, timeout=60)
    assert search.status_code == 400
    failed = _wait_for(lambda: line_of(search.headers["x-request-id"]), "log line of a refused search")
    assert failed["status"] == 400 and failed["route"] == "/v1/search"


def test_chat_requests_are_traced_in_mlflow_when_enabled(
    ops_service: str, service: str, settings: Settings
) -> None:
    from mlflow import MlflowClient

    untraced = httpx.post(
        f"{service}/v1/chat",
        json={"message": "What is a shield volcano?", "max_tokens": 8},
        headers={"X-Request-ID": "untraced-1"},
        timeout=300,
    )
    assert untraced.status_code == 200
    r = httpx.post(
        f"{ops_service}/v1/chat",
        json={"message": "What is a shield volcano?", "max_tokens": 16},
        headers={"X-Request-ID": "traced-1"},
        timeout=300,
    )
    assert r.status_code == 200 and r.json()["degraded"] is False
    client = MlflowClient(settings.mlflow_uri)

    def traces(request_id: str) -> list[Any]:
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            return []
        found = client.search_traces(
            locations=[experiment.experiment_id], filter_string=f"tags.`{REQUEST_ID_TAG}` = '{request_id}'"
        )
        return list(found)

    (trace,) = _wait_for(lambda: traces("traced-1"), "trace of request traced-1")
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) == {"chat", "retrieve", "generate"}
    root = spans["chat"]
    assert root.parent_id is None and root.inputs == {"message": "What is a shield volcano?"}
    assert spans["retrieve"].parent_id == root.span_id == spans["generate"].parent_id
    hits = spans["retrieve"].outputs["hits"]
    assert hits[0]["title"] == r.json()["sources"][0]["title"]
    assert spans["generate"].outputs["answer"] == r.json()["answer"]
    assert spans["generate"].outputs["usage"]["completion_tokens"] == r.json()["usage"]["completion_tokens"]
    assert root.start_time_ns <= spans["retrieve"].start_time_ns < spans["generate"].start_time_ns
    assert spans["generate"].end_time_ns <= root.end_time_ns
    assert traces("untraced-1") == []  # tracing is off in the main app
