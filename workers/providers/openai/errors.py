"""Error classification for OpenAI-compatible servers.

Body: ``{"error": {"message", "type", "param", "code"}}``. Compatible servers vary (vLLM and
others send ``{"error": "text"}``, ``{"message": ...}`` or ``{"detail": ...}``), so the message
is read leniently; what only the body can tell decides first:

- ``code``/``type`` ``insufficient_quota`` (sent with 429): the account is out of credit, waiting
  will not help → ``ProviderUnavailable``.
- ``code`` ``context_length_exceeded`` (400), or a "maximum context length" message from
  compatible servers that send no code → ``ContextWindowExceeded``.

Everything else is decided by status in :func:`workers.providers.base.classify_status`. An
``error`` object sent inside a stream (:func:`classify_stream_error`) is classified the same
way, as the status its code or type stands for.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from broker.errors import ContextWindowExceeded, ProviderError, ProviderUnavailable
from workers.providers.base import (
    BodyError,
    classify_status,
    decode_json_object,
    error_snippet,
    request_id,
)
from workers.providers.openai import api

_CONTEXT_MESSAGE = re.compile(r"maximum context length|context length exceeded", re.IGNORECASE)


#: The status an ``error`` object sent inside a stream stands for, by its ``code`` or ``type``
#: (the response itself was a 200); anything else failed on the server's side, as a 500 would.
STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "invalid_api_key": 401,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "requests": 429,
    "tokens": 429,
}
STREAM_ERROR_DEFAULT_STATUS = 500


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


def classify_stream_error(chunk: dict[str, Any], provider: str, rid: str | None) -> ProviderError:
    """A chunk carrying an ``error`` object (generation failed after the 200), classified as
    the response its ``code`` or ``type`` stands for would be: a ``server_error`` as a 500
    (retried), an ``invalid_request_error`` as a 400 (not). Compatible servers that put the
    HTTP status in ``code`` (vLLM) are taken at their word."""
    error = chunk.get("error")
    details: dict[str, Any] = error if isinstance(error, dict) else {}
    status = STREAM_ERROR_DEFAULT_STATUS
    code = details.get("code")
    if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600:
        status = code
    else:
        for name in (code, details.get("type")):
            if isinstance(name, str) and name in STREAM_ERROR_STATUS:
                status = STREAM_ERROR_STATUS[name]
                break
    return _classify_object(status, httpx.Headers(), chunk, provider, rid, where="stream error")


def _classify_object(
    status: int,
    headers: httpx.Headers,
    data: dict[str, Any],
    provider: str,
    rid: str | None,
    *,
    where: str,
) -> ProviderError:
    """Classify a decoded error body; ``where`` begins the message ("HTTP 429")."""
    error = data.get("error")
    details: dict[str, Any] = error if isinstance(error, dict) else {}
    text = _message(data, details, error)
    code = str(details.get("code") or "")
    kind = str(details.get("type") or "")
    label = code or kind
    message = f"{where} {label}: {text}" if label else f"{where}: {text}"
    kw: dict[str, Any] = {"provider": provider, "status": status, "provider_request_id": rid}
    if "insufficient_quota" in (code, kind):
        return ProviderUnavailable(message, **kw)
    if code == "context_length_exceeded" or (400 <= status < 500 and _CONTEXT_MESSAGE.search(text)):
        return ContextWindowExceeded(message, **kw)
    return classify_status(status, headers, message, provider=provider, provider_request_id=rid)


def _message(data: dict[str, Any], details: dict[str, Any], error: Any) -> str:
    for candidate in (details.get("message"), error, data.get("message"), data.get("detail")):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    return "no error message"
