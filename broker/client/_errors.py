"""Errors the client raises, and the mapping from an HTTP error response to one of them.

Every error is a :class:`broker.errors.BrokerError`::

    BrokerError
    ├── BrokerAPIError            the broker said no, or could not be reached (status_code None)
    │   ├── InvalidRequestError       400 / 422, or refused client-side before sending
    │   ├── AuthenticationError       401
    │   ├── NotFoundError             404
    │   ├── PayloadTooLargeError      413
    │   ├── RateLimitError            429 (retry_after from the ``retry-after`` header)
    │   └── ServerError               5xx
    ├── JobTimeout                ``Job.wait(timeout=...)`` ran out; carries the last seen job
    └── WebhookVerificationError  ``verify_webhook``: a header missing, a bad signature, or a
                                  timestamp outside the tolerance (a replay)
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

from pydantic import ValidationError

from broker.errors import BrokerError
from broker.schemas.http import ErrorBody, JobCounts
from broker.states import JobStatus

_SNIPPET_CHARS = 300


class BrokerAPIError(BrokerError):
    """The broker answered with an error, or could not be reached (``status_code`` is None).

    ``str(exc)`` is the server's message.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        type: str = "api_error",
        field: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type
        self.field = field
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code!r}, type={self.type!r}, "
            f"message={self.message!r}, field={self.field!r})"
        )


class InvalidRequestError(BrokerAPIError):
    """400 / 422, or a submission refused client-side before any request was sent."""


class AuthenticationError(BrokerAPIError):
    """401: missing or unknown API key."""


class NotFoundError(BrokerAPIError):
    """404: no such job for this team."""


class PayloadTooLargeError(BrokerAPIError):
    """413: the batch or one request is over a size limit."""


class RateLimitError(BrokerAPIError):
    """429: slow down; ``retry_after`` is in seconds when the server said."""


class ServerError(BrokerAPIError):
    """5xx, including a proxy's error page in front of the broker."""


class _JobState(Protocol):
    """What :class:`JobTimeout` reads of a job (a ``Job`` or ``AsyncJob``); a protocol, so
    this module needs nothing from the clients that raise it."""

    @property
    def id(self) -> str: ...

    @property
    def status(self) -> JobStatus: ...

    @property
    def counts(self) -> JobCounts: ...


class JobTimeout(BrokerError):
    """``wait(timeout=...)`` ran out before the job finished. ``job`` is the last seen state."""

    def __init__(self, job: _JobState, timeout: float) -> None:
        self.job = job
        self.timeout = timeout
        counts = job.counts
        super().__init__(
            f"job {job.id} is still {job.status} after {timeout:g}s "
            f"({counts.total - counts.pending}/{counts.total} requests done)"
        )


_BY_STATUS: dict[int, type[BrokerAPIError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: InvalidRequestError,
    429: RateLimitError,
}


def error_class(status_code: int) -> type[BrokerAPIError]:
    if status_code >= 500:
        return ServerError
    return _BY_STATUS.get(status_code, BrokerAPIError)


def error_from_response(
    status_code: int, headers: Mapping[str, str], body: bytes, url: str
) -> BrokerAPIError:
    """Map an error response to its class, keeping the server's message, field and retry-after."""
    cls = error_class(status_code)
    retry_after = parse_retry_after(headers.get("retry-after"))
    try:
        detail = ErrorBody.model_validate_json(body).error
    except ValidationError:
        message, type_ = _message_from_foreign_body(status_code, body, url), "http_error"
        return cls(message, status_code=status_code, type=type_, retry_after=retry_after)
    return cls(
        detail.message,
        status_code=status_code,
        type=detail.type,
        field=detail.field,
        retry_after=retry_after,
    )


def unreachable(base_url: str, exc: Exception) -> BrokerAPIError:
    """A transport failure (refused, DNS, timeout, reset) as an error with no status code."""
    reason = str(exc) or type(exc).__name__
    return BrokerAPIError(
        f"cannot reach the broker at {base_url}: {reason}", type="connection_error"
    )


def parse_retry_after(value: str | None) -> float | None:
    """``retry-after`` as seconds: a number, or an HTTP date (RFC 9110)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _message_from_foreign_body(status_code: int, body: bytes, url: str) -> str:
    """A useful message from a body that is not our ``ErrorBody`` (a proxy page, FastAPI detail)."""
    text = body.decode("utf-8", errors="replace").strip()
    detail = _fastapi_detail(text)
    if detail:
        return detail
    text = re.sub(r"(?is)<(script|style)\b.*?</\1>", " ", text)
    text = " ".join(re.sub(r"<[^>]+>", " ", text).split())
    if len(text) > _SNIPPET_CHARS:
        text = text[:_SNIPPET_CHARS] + "..."
    message = f"HTTP {status_code} from {url}"
    return f"{message}: {text}" if text else f"{message} (empty body)"


def _fastapi_detail(text: str) -> str | None:
    try:
        data: Any = json.loads(text)
    except ValueError:
        return None
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and detail:
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", ()))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
        return "; ".join(parts) or None
    return None


class WebhookVerificationError(BrokerError):
    """A webhook that must not be trusted: a header is missing, the signature does not match
    the body and secret, or the timestamp is outside the tolerance (a replay)."""
