"""What the synchronous SDK endpoints share: run one request interactively, then answer with
the surface's object, its stream, or its error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from broker.api.errors import error_response
from broker.api.resources import ApiResources
from broker.config.broker_toml import TeamConfig
from broker.dropin.interactive import ClientGone
from broker.dropin.live import Live
from broker.dropin.streams import StreamOf, replay
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
    stream_of: StreamOf | None,
) -> Response:
    """Run ``asked`` through the queues and answer with ``render(row)`` or, with
    ``stream_of``, the surface's SSE events as the answer is written; or the error its end
    calls for, with the request id in ``id_header``. A stream starts with its first text: an
    error before it is a plain error response, as without streaming."""
    interactive = resources.interactive
    try:
        if stream_of is None:
            ended: RequestRow | Live = await interactive.run(
                team, asked, request.headers, request.is_disconnected
            )
        else:
            ended = await interactive.stream(team, asked, request.headers, request.is_disconnected)
    except ClientGone:
        return Response(status_code=CLIENT_CLOSED)
    headers = {id_header: ended.request_id if isinstance(ended, Live) else ended.id}
    if isinstance(ended, Live):
        return _sse(ended.events(stream_of), headers)
    row = ended
    if row.status != RequestStatus.SUCCEEDED:
        status, code, message, extra = failure_of(row.status, row.error_code, row.error)
        return error_response(request, status, code, message, headers={**headers, **extra})
    if stream_of is not None:
        return _sse(replay(stream_of, row), headers)
    return JSONResponse(render(row), headers=headers)


def _sse(
    events: AsyncIterator[bytes] | Iterator[bytes], headers: dict[str, str]
) -> StreamingResponse:
    headers["cache-control"] = "no-cache"
    return StreamingResponse(events, media_type="text/event-stream", headers=headers)
