"""Rate-limit buckets on a fake clock (exact, no waiting), and request limits of the real service:
body size (declared or chunked) and field bounds all answer with a JSON reason, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from serving.errors import MAX_BODY_BYTES
from serving.limits import RateLimiter, TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    bucket = TokenBucket(rate_per_min=3, clock=clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(20.0)  # one token comes back every 20 s
    clock.now += 10
    assert bucket.take() == pytest.approx(10.0)
    clock.now += 10
    assert bucket.take() == 0.0
    clock.now += 3600  # idle time fills the bucket only up to its size
    assert [bucket.take() for _ in range(4)][-1] > 0


def test_the_limiter_keeps_one_bucket_per_key() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.check("a", 1) == 0 and limiter.check("a", 1) == 60
    assert limiter.check("b", 1) == 0  # another key is not slowed down by the first
    assert all(limiter.check("c", None) == 0 for _ in range(100))  # no limit
    clock.now += 0.5
    assert limiter.check("a", 1) == 60  # whole seconds, rounded up, for Retry-After
    assert limiter.check("a", 120) == 0  # a changed limit starts a fresh bucket


def _error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code and r.json()["error"]["message"]


def test_a_chunked_body_over_the_limit_is_refused(service: str) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the body is streamed in chunks
        yield b'{"message": "'
        for _ in range(MAX_BODY_BYTES // 1024 + 8):
            yield b"x" * 1024
        yield b'"}'

    r = httpx.post(f"{service}/v1/chat", content=chunks(), headers={"content-type": "application/json"})
    _error(r, 413, "request_too_large")
    small = httpx.post(
        f"{service}/v1/search",
        content=iter([b'{"query": "shield ', b'volcano"}']),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert small.status_code == 200 and small.json()["results"]  # a small chunked body still works


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/chat", {"message": "hi", "session_id": "s" * 129}),
        ("/v1/chat", {"message": "hi", "session_id": ""}),
        ("/v1/chat", {"message": "hi", "collection": "c" * 65}),
        ("/v1/chat", {"message": "hi", "filters": {f"f{i}": 1 for i in range(9)}}),
        ("/v1/chat", {"message": "hi", "filters": {"doc_id": ["x"] * 101}}),
        ("/v1/chat", {"message": "hi", "filters": {"doc_id": {"nested": "object"}}}),
        ("/v1/chat", {"message": "hi", "filters": {"doc_id": "x" * 513}}),
        ("/v1/chat", {"message": "hi", "max_tokens": 100_000}),
        ("/v1/search", {"query": "q", "filters": {"doc_id": []}}),
        ("/v1/search", {"query": "q", "filters": {"chunk_index": True}}),  # a boolean is not a number
        ("/v1/search", {"query": "q", "top_k": 101}),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}] * 65}),
        ("/v1/chat/completions", {"messages": []}),
        ("/v1/chat/completions", {"model": "m" * 129, "messages": [{"role": "user", "content": "hi"}]}),
        ("/v1/chat/completions", {"messages": [{"role": "hacker", "content": "hi"}]}),
        ("/v1/feedback", {"message_id": "m" * 65, "rating": 1}),
    ],
)
def test_fields_are_bounded(service: str, path: str, payload: dict) -> None:
    _error(httpx.post(f"{service}{path}", json=payload, timeout=60), 422, "invalid_request")


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        ({"chunk_index": "not-a-number"}, "filter 'chunk_index' takes whole numbers"),
        ({"title": 3}, "filter 'title' takes strings"),
        ({"doc_id": [1, "mixed"]}, "filter 'doc_id' takes strings"),
    ],
)
def test_a_mistyped_filter_value_is_a_400_that_names_the_field(
    service: str, filters: dict, reason: str
) -> None:
    r = httpx.post(f"{service}/v1/search", json={"query": "volcano", "filters": filters}, timeout=60)
    _error(r, 400, "bad_request")
    assert r.json()["error"]["message"].startswith(reason), r.text


def test_a_quote_in_a_filter_value_is_data_not_sql(service: str) -> None:
    r = httpx.post(
        f"{service}/v1/search", json={"query": "volcano", "filters": {"source_uri": "'; --"}}, timeout=60
    )
    assert r.status_code == 200, r.text
    assert r.json()["results"] == []  # no chunk comes from that source: the quote matched literally


def test_search_results_obey_the_filters(service: str) -> None:
    unfiltered = httpx.post(f"{service}/v1/search", json={"query": "volcano lava", "top_k": 10}, timeout=60)
    hits = unfiltered.json()["results"]
    docs = {h["doc_id"] for h in hits}
    assert len(docs) >= 2, hits  # the filter below has something to exclude
    doc, source = hits[0]["doc_id"], hits[0]["source_uri"]
    for filters, field, allowed in [
        ({"doc_id": doc}, "doc_id", {doc}),
        ({"source_uri": [source]}, "source_uri", {source}),
        ({"doc_id": sorted(docs)[:2]}, "doc_id", set(sorted(docs)[:2])),
    ]:
        for mode in ("hybrid", "vector", "text"):
            body = {"query": "volcano lava", "top_k": 10, "mode": mode, "filters": filters}
            r = httpx.post(f"{service}/v1/search", json=body, timeout=60)
            assert r.status_code == 200, r.text
            results = r.json()["results"]
            if mode != "text":  # a filtered doc may lack the words; never its nearest vectors
                assert results, (filters, mode)
            assert {h[field] for h in results} <= allowed, (filters, mode, results)


def test_an_openai_request_without_a_user_message_is_a_400(service: str) -> None:
    r = httpx.post(
        f"{service}/v1/chat/completions",
        json={"messages": [{"role": "system", "content": "be brief"}]},
        timeout=60,
    )
    _error(r, 400, "bad_request")
