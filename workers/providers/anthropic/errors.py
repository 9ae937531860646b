"""Error classification for the Anthropic Messages API.

Body: ``{"type": "error", "error": {"type", "message"}, "request_id"}``. What only the body can
tell decides first:

- a prompt that does not fit → ``ContextWindowExceeded``: 413 ``request_too_large``, or a 400
  ``invalid_request_error`` whose message says the prompt is too long / exceeds the context
  window (the API has no dedicated error code for it, so the message is matched).
- 529 ``overloaded_error`` is retryable; the shared status table already treats 5xx so.

Everything else is decided by status in :func:`workers.providers.base.classify_status`. An
``event: error`` inside a stream (:func:`classify_stream_error`) is classified the same way, as
the status its type is documented with.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from broker.errors import ContextWindowExceeded, ProviderError
from workers.providers.anthropic import api
from workers.providers.base import (
    BodyError,
    classify_status,
    decode_json_object,
    error_snippet,
    request_id,
)

_CONTEXT_MESSAGE = re.compile(
    r"prompt is too long|context (window|limit|length)|too many (input )?tokens", re.IGNORECASE
)


#: The status each documented error ``type`` comes with. An ``error`` event inside a stream
#: (sent after the 200) is classified as if it had come with its status; unknown types as a 500.
STATUS_BY_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
UNKNOWN_TYPE_STATUS = 500


def classify(status: int, headers: httpx.Headers, body: bytes, provider: str) -> ProviderError:
    rid = request_id(headers, *api.REQUEST_ID_HEADERS)
    try:
        data = decode_json_object(headers, body)
    except BodyError:
        message = f"HTTP {status} with a non-JSON body"
        if snippet := error_snippet(body):
            message += f": {snippet}"
        return classify_status(status, headers, message, provider=provider, provider_request_id=rid)
    return _classify_object(status, headers, data, provider, rid, where=f"HTTP {status}")


def classify_stream_error(event: dict[str, Any], provider: str, rid: str | None) -> ProviderError:
    """An ``event: error`` (the same object as an error body), classified as the response of
    its type's status would be: ``overloaded_error`` as a 529 (retried), ``invalid_request_error``
    as a 400 (not)."""
    error = event.get("error")
    kind = error.get("type") if isinstance(error, dict) else None
    status = STATUS_BY_TYPE.get(str(kind), UNKNOWN_TYPE_STATUS)
    return _classify_object(status, httpx.Headers(), event, provider, rid, where="stream error")


def _classify_object(
    status: int,
    headers: httpx.Headers,
    data: dict[str, Any],
    provider: str,
    rid: str | None,
    *,
    where: str,
) -> ProviderError:
    """Classify a decoded error object; ``where`` begins the message ("HTTP 529")."""
    if not rid and isinstance(data.get("request_id"), str):
        rid = data["request_id"] or None
    error = data.get("error")
    details: dict[str, Any] = error if isinstance(error, dict) else {}
    kind = str(details.get("type") or "")
    text = _message(data, details)
    message = f"{where} {kind}: {text}" if kind else f"{where}: {text}"
    if (
        kind == "request_too_large"
        or status == 413
        or (kind == "invalid_request_error" and _CONTEXT_MESSAGE.search(text))
    ):
        return ContextWindowExceeded(
            message, provider=provider, status=status, provider_request_id=rid
        )
    return classify_status(status, headers, message, provider=provider, provider_request_id=rid)


def _message(data: dict[str, Any], details: dict[str, Any]) -> str:
    for candidate in (details.get("message"), data.get("message")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return "no error message"
