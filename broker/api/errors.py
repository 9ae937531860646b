"""Every error leaves the API as ``{"error": {"type", "message", "field"}}``."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from broker.errors import (
    AuthenticationFailed,
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    ServiceUnavailable,
    TooManyRequests,
    field_path,
)

log = logging.getLogger(__name__)


@contextmanager
def store_errors() -> Iterator[None]:
    """Redis and database failures leave as 503, like everywhere else in the API."""
    try:
        yield
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
    except SQLAlchemyError as exc:
        raise ServiceUnavailable(f"the database is unreachable: {type(exc).__name__}") from exc


def _body(status: int, type_: str, message: str, field: str | None = None) -> JSONResponse:
    payload = {"error": {"type": type_, "message": message, "field": field}}
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(payload, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))
        if loc[:1] in (("query",), ("path",)):  # a parameter is named as the caller wrote it
            loc = loc[1:]
        field = field_path(p for p in loc if p != "body") or "body"
        return _body(422, "invalid_request", f"{field}: {first.get('msg')}", field)

    @app.exception_handler(InvalidRequest)
    async def _invalid(_: Request, exc: InvalidRequest) -> JSONResponse:
        return _body(exc.status_code, "invalid_request", exc.message, exc.field)

    @app.exception_handler(AuthenticationFailed)
    async def _auth(_: Request, exc: AuthenticationFailed) -> JSONResponse:
        return _body(401, "authentication_error", str(exc))

    @app.exception_handler(Forbidden)
    async def _forbidden(_: Request, exc: Forbidden) -> JSONResponse:
        return _body(403, "permission_error", str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _body(404, "not_found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _body(409, "conflict", str(exc))

    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return _body(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(TooManyRequests)
    async def _too_many(_: Request, exc: TooManyRequests) -> JSONResponse:
        response = _body(429, exc.type_, exc.message)
        response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
        return response

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(_: Request, exc: ServiceUnavailable) -> JSONResponse:
        log.error("service unavailable: %s", exc)
        return _body(503, "unavailable", f"{exc}; nothing was stored, retry later")
