"""Every error leaves as `{"error": {"code", "message"}}` with a fitting status, never a bare 500
for bad input. Exceptions raised inside a downstream deployment arrive as instances of their
original class (Ray re-raises them so), so the same handlers cover them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from ray.exceptions import RayActorError
from starlette.exceptions import HTTPException as StarletteHTTPException

from pipelines.store import CollectionNotFoundError
from serving.limits import BodyLimit

log = logging.getLogger("ragline.serving")
MAX_BODY_BYTES = 64 * 1024


class IndexModelMismatchError(RuntimeError):
    """The query embedder's model is not the one the index was built with."""


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": {"code": code, "message": message}})


def install(app: FastAPI) -> None:
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)  # chunked bodies too, not only Content-Length

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error(422, "invalid_request", _fields(exc.errors()) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(CollectionNotFoundError)
    async def not_found(_: Request, exc: CollectionNotFoundError) -> JSONResponse:
        return error(404, "collection_not_found", message_of(exc))

    @app.exception_handler(IndexModelMismatchError)
    async def mismatch(_: Request, exc: IndexModelMismatchError) -> JSONResponse:
        return error(409, "index_model_mismatch", message_of(exc))

    @app.exception_handler(ValueError)
    async def bad_value(_: Request, exc: ValueError) -> JSONResponse:
        return error(400, "bad_request", message_of(exc))

    @app.exception_handler(asyncio.TimeoutError)
    async def timeout(_: Request, exc: asyncio.TimeoutError) -> JSONResponse:
        return error(503, "timeout", "the service did not answer in time; try again")

    @app.exception_handler(RayActorError)
    async def replica_lost(_: Request, exc: RayActorError) -> JSONResponse:
        # Retried once already where that is safe (resilience.py); Serve is replacing the replica.
        response = error(503, "replica_unavailable", "a replica of the service was lost; try again")
        response.headers["Retry-After"] = "1"
        return response


def message_of(exc: BaseException) -> str:
    # A RayTaskError's str() carries the remote traceback; the cause's own message is what users need.
    cause = getattr(exc, "cause", None)
    exc = cause if isinstance(cause, BaseException) else exc
    if isinstance(exc, ValidationError):  # its str() ends with a documentation link
        return _fields(exc.errors())[:500]
    return str(exc).strip().splitlines()[-1][:500]


def _fields(errors: Sequence[Any]) -> str:
    """pydantic's errors as "field.path: what is wrong; ..." (FastAPI puts a request body's under "body")."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body')}: {e['msg']}" for e in errors)
