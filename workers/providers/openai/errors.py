"""Error classification for OpenAI-compatible servers.

Body: ``{"error": {"message", "type", "param", "code"}}``. Compatible servers vary (vLLM and
others send ``{"error": "text"}``, ``{"message": ...}`` or ``{"detail": ...}``), so the message
is read leniently; what only the body can tell decides first:

- ``code``/``type`` ``insufficient_quota`` (sent with 429): the account is out of credit, waiting
  will not help → ``ProviderUnavailable``.
- ``code`` ``context_length_exceeded`` (400), or a "maximum context length" message from
  compatible servers that send no code → ``ContextWindowExceeded``.

Everything else is decided by status in :func:`workers.providers.base.classify_status`.
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


def classify(status: int, headers: httpx.Headers, body: bytes, provider: str) -> ProviderError:
    rid = request_id(headers, *api.REQUEST_ID_HEADERS)
    try:
        data = decode_json_object(headers, body)
    except BodyError:
        message = f"HTTP {status} with a non-JSON body"
        if snippet := error_snippet(body):
            message += f": {snippet}"
        return classify_status(status, headers, message, provider=provider, provider_request_id=rid)
    error = data.get("error")
    details: dict[str, Any] = error if isinstance(error, dict) else {}
    text = _message(data, details, error)
    code = str(details.get("code") or "")
    kind = str(details.get("type") or "")
    label = code or kind
    message = f"HTTP {status} {label}: {text}" if label else f"HTTP {status}: {text}"
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
