"""API-key access control for the Serve ingress (RAGLINE_AUTH=true).

`install(api)` adds a middleware that, on every /v1 route, checks `Authorization: Bearer <key>`
(401), applies the key's rate limit (429 + Retry-After) and makes the key the request's caller.
Routes then call `allow(collection)` (403 for a collection the key may not read), `visible(names)`
(/v1/models), `session_key(id)` (tenants never share a conversation), `session_prefix()` (feedback
only on the tenant's own messages) and `account(prompt, completion)` (tokens summed per key). With
auth off there is no caller and every hook is a no-op. Everything outside /v1 (the page, health,
readiness, metrics, the OpenAPI docs) stays open.

The caller travels in a context variable: the middleware sets it before the route runs, and the
route, its streamed body and the helpers it calls all see it, with no extra parameter on every
method of the ingress.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from pipelines.settings import Settings
from serving.errors import error
from serving.keys import ApiKey, KeyStore, format_rate
from serving.limits import RateLimiter

PROTECTED_PREFIX = "/v1/"


class ForbiddenError(Exception):
    """The caller's key may not read this collection."""


class Guard:
    """One per ingress replica: the key store and this replica's rate-limit buckets."""

    def __init__(self, store: KeyStore, limiter: RateLimiter | None = None) -> None:
        self.store = store
        self.limiter = limiter or RateLimiter()

    @classmethod
    def from_settings(cls, settings: Settings) -> Guard | None:
        return cls(KeyStore(settings.sessions_database)) if settings.auth else None

    def admit(self, authorization: str | None) -> ApiKey | JSONResponse:
        """The caller's key, or the 401/429 response that refuses the request."""
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return _unauthorized("an API key is required: send the header 'Authorization: Bearer <key>'")
        key = self.store.authenticate(secret.strip())
        if key is None:
            return _unauthorized("invalid API key")
        if not key.active:
            return _unauthorized(f"API key {key.id} was revoked")
        wait = self.limiter.check(key.id, key.rate_per_min)
        if wait:
            response = error(
                429,
                "rate_limited",
                f"API key {key.id} is limited to {format_rate(key.rate_per_min)}; retry in {wait} s",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        return key


@dataclass(frozen=True)
class Caller:
    key: ApiKey
    guard: Guard


_caller: ContextVar[Caller | None] = ContextVar("ragline_caller", default=None)


def _unauthorized(message: str) -> JSONResponse:
    response = error(401, "unauthorized", message)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def install(app: FastAPI) -> None:
    """Guard APP's /v1 routes with the `guard` attribute of the Serve replica's ingress object
    (None = auth off). Module-level names, so Serve ships them by reference."""
    app.add_middleware(Authenticate)
    app.add_exception_handler(ForbiddenError, forbidden)


def _replica_guard() -> Guard | None:
    from ray import serve
    from ray.serve.exceptions import RayServeException

    try:
        ingress = serve.get_replica_context().servable_object
    except RayServeException:  # not inside a Serve replica
        return None
    return getattr(ingress, "guard", None)


def _path(scope: dict[str, Any]) -> str:
    """The path below the app's route prefix (Serve mounts apps at /NAME)."""
    path, root = scope.get("path", ""), scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


class Authenticate:
    """Pure ASGI (Starlette's `@app.middleware("http")` costs an extra task and a body stream per
    request, measurable on the search path): admits or refuses /v1 requests, and makes the key the
    request's caller for the route and its streamed body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guard = _replica_guard() if scope["type"] == "http" else None
        if guard is None or not _path(scope).startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        admitted = guard.admit(Headers(scope=scope).get("authorization"))
        if isinstance(admitted, Response):
            await admitted(scope, receive, send)
            return
        token = _caller.set(Caller(admitted, guard))
        try:
            await self.app(scope, receive, send)
        finally:
            _caller.reset(token)


async def forbidden(_: Request, exc: Exception) -> JSONResponse:
    return error(403, "forbidden", str(exc))


# --- hooks for the routes ----------------------------------------------------------------------
def allow(collection: str) -> str:
    """COLLECTION, if the caller may read it; raises ForbiddenError otherwise."""
    caller = _caller.get()
    if caller is not None and not caller.guard.store.may_read(caller.key, collection):
        raise ForbiddenError(
            f"API key {caller.key.id} (tenant {caller.key.tenant!r}) may not read collection {collection!r}"
        )
    return collection


def visible(names: list[str]) -> list[str]:
    caller = _caller.get()
    return names if caller is None else caller.guard.store.readable(caller.key, names)


def session_key(session_id: str) -> str:
    """Where a session is stored: per tenant, so a guessed session id never reads another tenant's
    conversation. Hashed to keep the stored id short; the client keeps seeing its own id."""
    caller = _caller.get()
    if caller is None:
        return session_id
    return f"{caller.key.tenant}/{hashlib.sha256(session_id.encode()).hexdigest()[:32]}"


def session_prefix() -> str:
    """What the caller's session keys start with ("" with auth off): feedback is only taken for
    messages of the caller's tenant."""
    caller = _caller.get()
    return "" if caller is None else f"{caller.key.tenant}/"


def account(prompt_tokens: int, completion_tokens: int) -> None:
    caller = _caller.get()
    if caller is not None and (prompt_tokens or completion_tokens):
        caller.guard.store.add_usage(caller.key.id, prompt_tokens, completion_tokens)
