"""A ceiling on request bodies (``max_body_bytes``): 413 before a byte too many is read.

A ``Content-Length`` over the limit is refused before the body is read at all; a body without
one (chunked) is counted while it is read and refused as soon as it passes the limit. Either
way the answer is the API's usual ``{"error": {...}}`` naming the limit.

``/v1/files`` takes batch input files of up to 200 MB (:mod:`broker.dropin.files`), so it has
its own, larger limit (:data:`PATH_LIMITS`); the upload is streamed to disk, never held.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker.dropin.files import MAX_BYTES as FILE_MAX_BYTES

PATH_LIMITS = {"/v1/files": FILE_MAX_BYTES + (1 << 20)}
"""Paths (prefixes) with a limit of their own: the file plus room for the multipart framing."""


class BodyTooLarge(HTTPException):
    """Raised while reading a body that passed the limit. An ``HTTPException`` so FastAPI's body
    parsing lets it through (anything else becomes a 400) to the handler installed here."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, detail=_message(limit))


def _message(limit: int, size: int | None = None) -> str:
    said = f"is {size:,} bytes" if size is not None else "is larger than that"
    return (
        f"the request body {said}; the limit is {_human(limit)} ({limit:,} bytes, "
        "max_body_bytes): send fewer requests per job"
    )


def _human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:g} {unit}"
    return f"{n} bytes"


def _response(message: str) -> JSONResponse:
    body = {"error": {"type": "invalid_request", "message": message, "field": "body"}}
    return JSONResponse(body, status_code=413)


class BodyLimit:
    """Pure ASGI middleware: no buffering, only counting."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def limit_of(self, path: str) -> int:
        for prefix, limit in PATH_LIMITS.items():
            if path == prefix or path.startswith(prefix + "/"):
                return max(limit, self.max_bytes)
        return self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limit_of(scope.get("path", ""))
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await _response(_message(max_bytes, declared))(scope, receive, send)
            return
        received, started = 0, False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:  # read outside a route (which the handler would answer)
            if started:
                raise
            await _response(str(exc.detail))(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def install(app: FastAPI, max_bytes: int) -> None:
    app.add_middleware(BodyLimit, max_bytes=max_bytes)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_: Request, exc: BodyTooLarge) -> JSONResponse:
        return _response(str(exc.detail))
