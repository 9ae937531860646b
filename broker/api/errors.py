"""Every error leaves the API as ``{"error": {"type", "message", "field"}}``, except on the
drop-in SDK surfaces, where it takes the shape that SDK reads: ``{"error": {"message", "type",
"param", "code"}}`` under the OpenAI paths, ``{"type": "error", "error": {"type", "message"}}``
under Anthropic's ``/v1/messages``. The status code is the same on every surface."""

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


OPENAI_PATHS = ("/v1/chat/", "/v1/embeddings", "/v1/files", "/v1/batches", "/v1/models")
ANTHROPIC_PATHS = ("/v1/messages",)
ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
}
OPENAI_TYPES = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}


def surface_of(path: str) -> str:
    """``openai``, ``anthropic`` or ``broker``: whose error shape a path answers in."""
    if path.startswith(ANTHROPIC_PATHS):
        return "anthropic"
    if path.startswith(OPENAI_PATHS):
        return "openai"
    return "broker"


def error_payload(
    surface: str, status: int, type_: str, message: str, field: str | None = None
) -> dict:
    """The error body of ``surface`` (:func:`surface_of`); ``type_`` is the broker's own type,
    kept as the OpenAI ``code``."""
    if surface == "anthropic":
        kind = ANTHROPIC_TYPES.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message}}
    if surface == "openai":
        kind = OPENAI_TYPES.get(status) or (
            "invalid_request_error" if status < 500 else "server_error"
        )
        if status == 429:
            kind = "rate_limit_error" if type_ != "budget_exceeded" else "insufficient_quota"
        return {"error": {"message": message, "type": kind, "param": field, "code": type_}}
    return {"error": {"type": type_, "message": message, "field": field}}


def error_response(
    request: Request | None,
    status: int,
    type_: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error in the shape the caller's surface reads (by ``request``'s path)."""
    surface = surface_of(request.url.path) if request is not None else "broker"
    headers = dict(headers or {})
    if status == 401:
        headers["www-authenticate"] = "Bearer"
    payload = error_payload(surface, status, type_, message, field)
    return JSONResponse(payload, status_code=status, headers=headers or None)




def install(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        loc = tuple(first.get("loc", ()))
        if loc[:1] in (("query",), ("path",)):  # a parameter is named as the caller wrote it
            loc = loc[1:]
        field = field_path(p for p in loc if p != "body") or "body"
        return error_response(request, 422, "invalid_request", f"{field}: {first.get('msg')}", field)

    @app.exception_handler(InvalidRequest)
    async def _invalid(request: Request, exc: InvalidRequest) -> JSONResponse:
        return error_response(request, exc.status_code, "invalid_request", exc.message, exc.field)

    @app.exception_handler(AuthenticationFailed)
    async def _auth(request: Request, exc: AuthenticationFailed) -> JSONResponse:
        return error_response(request, 401, "authentication_error", str(exc))

    @app.exception_handler(Forbidden)
    async def _forbidden(request: Request, exc: Forbidden) -> JSONResponse:
        return error_response(request, 403, "permission_error", str(exc))

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return error_response(request, 404, "not_found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return error_response(request, 409, "conflict", str(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(request, exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(TooManyRequests)
    async def _too_many(request: Request, exc: TooManyRequests) -> JSONResponse:
        response = error_response(request, 429, exc.type_, exc.message)
        response.headers["retry-after"] = str(max(1, math.ceil(exc.retry_after)))
        return response

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(request: Request, exc: ServiceUnavailable) -> JSONResponse:
        log.error("service unavailable: %s", exc)
        return error_response(request, 503, "unavailable", f"{exc}; nothing was stored, retry later")
