"""Operations hooks of the Serve app: Prometheus metrics, request ids and one JSON log line per request.

Every ingress replica is its own process with its own registry, so `GET /metrics` shows the counts of
the replica that answered; scrape each replica (or sum over them in Prometheus). The ingress does
all the counting: the embed, retrieve and generate stages are timed from there, with the retriever's
own search time and cache result coming back in its reply.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import re
import time
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.settings import Settings

if TYPE_CHECKING:
    from serving.schemas import ChatResponse

REQUEST_ID_HEADER = "x-request-id"
# Ids from clients end up in logs, traces and headers: short, printable, no separators.
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STAGES = ("embed", "retrieve", "generate")

REQUESTS = Counter(
    "ragline_requests_total",
    "HTTP requests by route template, method and status",
    ["route", "method", "status"],
)
REQUEST_LATENCY = Histogram(
    "ragline_request_latency_seconds",
    "Time from the request reaching the ingress to its last body byte (streams included)",
    ["route"],
    buckets=_BUCKETS,
)
STAGE_LATENCY = Histogram(
    "ragline_stage_latency_seconds",
    "Per-request time in a stage: embed (the query embedding of the request's search batch), "
    "retrieve (the retriever's search), generate (the generator's answer)",
    ["stage"],
    buckets=_BUCKETS,
)
TOKENS = Counter("ragline_tokens_total", "Tokens of answered chat requests", ["kind"])
DEGRADED = Counter("ragline_degraded_answers_total", "Chat answers made of passages: generation failed")
CACHE = Counter(
    "ragline_cache_requests_total",
    "Cache lookups: retriever (the retriever service's Retriever per collection)",
    ["cache", "result"],
)
IN_FLIGHT = Gauge("ragline_requests_in_flight", "Requests this ingress replica is answering now")
REPLICA_RETRIES = Counter(
    "ragline_replica_retries_total", "Searches retried because a replica died under them (resilience.py)"
)

log = logging.getLogger("ragline.requests")
log.propagate = False  # the JSON lines go to their own file, not into Serve's replica log format


@dataclass
class RequestContext:
    """What one request has gathered for its log line and its trace."""

    request_id: str
    started: float = field(default_factory=time.perf_counter)
    started_ns: int = field(default_factory=time.time_ns)
    fields: dict[str, Any] = field(default_factory=lambda: {"collection": None})
    # stage -> (start, end) in perf_counter seconds, plus what the trace shows of it
    spans: dict[str, tuple[float, float, dict[str, Any]]] = field(default_factory=dict)

    def wall_ns(self, perf: float) -> int:
        return self.started_ns + int((perf - self.started) * 1e9)


_current: ContextVar[RequestContext | None] = ContextVar("ragline_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def request_id() -> str | None:
    ctx = _current.get()
    return ctx.request_id if ctx else None


def note(**fields: Any) -> None:
    """Adds fields (collection, degraded ...) to this request's log line."""
    ctx = _current.get()
    if ctx is not None:
        ctx.fields.update(fields)


def sane_request_id(value: str | None) -> str | None:
    return value if value and _SANE_ID.fullmatch(value) else None


def cache(name: str, hit: bool) -> None:
    CACHE.labels(cache=name, result="hit" if hit else "miss").inc()


def retrieved(start: float, query: str, found: dict[str, Any]) -> None:
    """After a search: the query embedding and search times the retriever reports, its cache
    result, and the spans for a trace (the embed span starts with the search: it runs inside it)."""
    end = time.perf_counter()
    if found.get("embed_ms") is not None:
        STAGE_LATENCY.labels(stage="embed").observe(found["embed_ms"] / 1000)
    if "search_ms" in found:
        STAGE_LATENCY.labels(stage="retrieve").observe(found["search_ms"] / 1000)
    if "cache_hit" in found:
        cache("retriever", bool(found["cache_hit"]))
    ctx = _current.get()
    if ctx is not None:
        if found.get("embed_ms") is not None:
            ctx.spans["embed"] = (start, min(end, start + found["embed_ms"] / 1000), {})
        hits = [{"id": h["id"], "title": h["title"], "score": h["score"]} for h in found["hits"]]
        ctx.spans["retrieve"] = (start, end, {"query": query, "hits": hits, "version": found["version"]})


def answered(response: ChatResponse, question: str) -> None:
    """Counts a finished chat answer, stamps the request id on it, and writes its trace if tracing is on."""
    ctx = _current.get()
    response.request_id = ctx.request_id if ctx else None
    TOKENS.labels(kind="prompt").inc(response.usage.prompt_tokens)
    TOKENS.labels(kind="completion").inc(response.usage.completion_tokens)
    if response.degraded:
        DEGRADED.inc()
    else:
        STAGE_LATENCY.labels(stage="generate").observe(response.timings.generation_ms / 1000)
    note(degraded=response.degraded)
    if ctx is not None:
        end = time.perf_counter()
        ctx.spans["generate"] = (end - response.timings.generation_ms / 1000, end, {})
        if _tracer is not None:
            try:
                _tracer.trace_chat(ctx, question, response)
            except Exception as exc:  # a trace is never worth a failed answer
                logging.getLogger("ragline.serving").warning(
                    "could not trace request %s: %s", ctx.request_id, exc
                )


def _route_label(routes: list[BaseRoute], scope: Scope) -> str:
    """The route template, not the path: one series per endpoint whatever the client sends. FastAPI
    names the route it ran in the scope; a request refused before routing (413, 401) is matched here."""
    route = scope.get("route")
    if route is None:
        route = next((r for r in _flat(routes) if r.matches(scope)[0] is not Match.NONE), None)
    return str(getattr(route, "path", None) or "other")


def _flat(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    # Serve re-mounts the ingress's methods on an included router; FastAPI keeps those nested.
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            yield from _flat(nested.routes)
        else:
            yield route


class RequestMiddleware:
    """Pure ASGI (streams are timed to their last byte): request id, metrics, the JSON log line.

    Behind Serve's proxy every request arrives with an `x-request-id` (the client's, or one the proxy
    made) and the proxy echoes it on the response; an id that is not sane is replaced here, and the
    replacement is added to the response beside the proxy's echo."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope).get(REQUEST_ID_HEADER)
        rid = sane_request_id(incoming) or uuid.uuid4().hex
        ctx = RequestContext(rid)
        status = 500  # unless a response starts: an exception that escaped every handler

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if rid != incoming:
                    MutableHeaders(scope=message).append("X-Request-ID", rid)
            await send(message)

        token = _current.set(ctx)
        IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            IN_FLIGHT.dec()
            _current.reset(token)
            _finish(ctx, _route_label(self.routes, scope), scope["method"], status)


def _finish(ctx: RequestContext, route: str, method: str, status: int) -> None:
    seconds = time.perf_counter() - ctx.started
    REQUESTS.labels(route=route, method=method, status=str(status)).inc()
    REQUEST_LATENCY.labels(route=route).observe(seconds)
    if log.handlers:
        line = {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": ctx.request_id,
            "method": method,
            "route": route,
            "status": status,
            "latency_ms": round(seconds * 1000, 1),
            **ctx.fields,
        }
        log.info(json.dumps(line, default=str))


def install(api: FastAPI) -> None:
    """The middleware (outermost, so it sees every response) and `GET /metrics` on the ingress app."""
    api.add_middleware(RequestMiddleware, routes=api.router.routes)

    @api.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


_tracer: Any = None


def request_log(settings: Settings) -> Path:
    return settings.root / "logs" / "requests.jsonl"


def configure(settings: Settings) -> None:
    """Per ingress replica: the request log file under the data dir, and MLflow tracing when on."""
    global _tracer
    path = request_log(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not any(getattr(h, "baseFilename", None) == str(path) for h in log.handlers):
        # Appends of one short line are atomic, so replicas can share the file; logrotate-friendly.
        handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
    log.setLevel(logging.INFO)
    if settings.trace_requests:
        from serving.tracing import ChatTracer

        _tracer = ChatTracer(settings)
