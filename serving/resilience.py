"""Replica deaths. Serve routes new requests around a dead replica, but the requests that were on it
when it died fail with `RayActorError`. Retrieval is read-only, so the ingress retries it once (Serve
routes the retry to a live replica); what still fails that way answers 503 (errors.py)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ray.exceptions import RayActorError

from serving.observability import REPLICA_RETRIES

T = TypeVar("T")
log = logging.getLogger("ragline.serving")


def replica_lost(exc: BaseException) -> bool:
    # A downstream task that got a dead replica's result as an argument re-raises it, maybe wrapped.
    return isinstance(exc, RayActorError) or isinstance(getattr(exc, "cause", None), RayActorError)


async def retry_if_replica_died(call: Callable[[], Awaitable[T]], attempts: int = 2) -> T:
    """CALL (an idempotent request to other deployments), again if a replica died under it."""
    for attempt in range(1, attempts + 1):
        try:
            return await call()
        except Exception as exc:
            if attempt == attempts or not replica_lost(exc):
                raise
            REPLICA_RETRIES.inc()
            log.warning("a replica died under a request; retrying (%d/%d): %s", attempt, attempts - 1, exc)
    raise AssertionError("unreachable")
