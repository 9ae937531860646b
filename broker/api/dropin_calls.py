"""What the synchronous SDK endpoints share: run one request interactively, then answer with
the surface's object, its stream, or its error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from broker.api.errors import error_response
from broker.api.resources import ApiResources
from broker.config.broker_toml import TeamConfig
from broker.dropin.interactive import ClientGone
from broker.dropin.wire import failure_of
from broker.schemas.http import RequestIn
from broker.states import RequestStatus
from broker.store import Request as RequestRow

CLIENT_CLOSED = 499  # nginx's code: nobody reads it, but the access log says what happened


async def answer(
    request: Request,
    team: TeamConfig,
    resources: ApiResources,
    asked: RequestIn,
    id_header: str,
    render: Callable[[RequestRow], dict[str, Any]],
    stream: Callable[[RequestRow], Iterator[bytes]] | None,
) -> Response:
    """Run ``asked`` through the queues and answer with ``render(row)`` (or ``stream(row)``
    as SSE), or the error its end calls for, with the request id in ``id_header``."""
    try:
        row = await resources.interactive.run(
            team,
            asked,
            request.headers,
            request.is_disconnected,
        )
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    headers = {id_header: row.id}
    if row.status != RequestStatus.SUCCEEDED:
        status, code, message, extra = failure_of(row.status, row.error_code, row.error)
        return error_response(request, status, code, message, headers={**headers, **extra})
    if stream is not None:
        headers["cache-control"] = "no-cache"
        return StreamingResponse(stream(row), media_type="text/event-stream", headers=headers)
    return JSONResponse(render(row), headers=headers)
