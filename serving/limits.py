"""Request limits: per-key rate limits (token buckets) and the request body size limit."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]


@dataclass
class TokenBucket:
    """RATE_PER_MIN requests a minute, in bursts of up to the same number."""

    rate_per_min: float
    clock: Clock = time.monotonic
    tokens: float = field(init=False)
    updated: float = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = self.capacity
        self.updated = self.clock()

    @property
    def capacity(self) -> float:
        return max(1.0, self.rate_per_min)

    def take(self) -> float:
        """0.0 when the request may go, else the seconds until it may."""
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate_per_min / 60.0)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) * 60.0 / self.rate_per_min


class RateLimiter:
    """One bucket per key. It lives in one ingress replica, so with N replicas a key gets up to N
    times its rate in all: a limit against floods, not a billing-grade quota."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, key_id: str, rate_per_min: float | None) -> int:
        """0 when the request may go, else whole seconds to wait (for a Retry-After header)."""
        if rate_per_min is None:
            return 0
        bucket = self._buckets.get(key_id)
        if bucket is None or bucket.rate_per_min != rate_per_min:
            bucket = self._buckets[key_id] = TokenBucket(rate_per_min, self.clock)
        wait = bucket.take()
        return math.ceil(wait) if wait > 0 else 0


class BodyLimit:
    """ASGI middleware: a request body over MAX_BYTES gets 413. A declared Content-Length is checked
    up front; a chunked body (no Content-Length) is read here up to the limit, then replayed, so an
    unbounded upload never reaches the app's memory."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._reject(send, length.decode("latin-1"))
            return
        if length is not None or scope.get("method") in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)  # the server holds a body to its declared length
            return
        body, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                await self._reject(send, f"more than {self.max_bytes}")
                return
            body.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, send: Any, size: str) -> None:
        message = f"body is {size} bytes; the limit is {self.max_bytes}"
        payload = json.dumps({"error": {"code": "request_too_large", "message": message}}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
