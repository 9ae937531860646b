"""One error hierarchy for the whole broker.

Errors from redis, httpx, SQLAlchemy and providers are translated where they enter our code
(``raise ... from exc``) and never leak raw to users::

    BrokerError
    ├── ConfigError              broker.toml or settings are invalid (file, key, reason)
    ├── InvalidRequest           a submission the API refuses (HTTP 400 / 413 / 422)
    │   └── PayloadTooLarge      over a size limit (HTTP 413)
    ├── AuthenticationFailed     missing or unknown API key (HTTP 401)
    ├── Forbidden                a known key not allowed here, or admin API off (HTTP 403)
    ├── NotFound                 no such job for this team, or no such team (HTTP 404)
    ├── Conflict                 the thing is not in a state that allows this (HTTP 409)
    ├── ServiceUnavailable       Redis or the database is unreachable (HTTP 503)
    └── ProviderError            a provider call did not produce a usable completion
        ├── ProviderRetryable        429, 5xx, 529, timeouts, connection errors
        │   └── ProviderRateLimited  429 rate limit (carries retry_after)
        ├── ProviderUnavailable      auth failure or quota exhausted: stop calling it
        ├── CircuitOpen              its breaker is open: not called at all
        ├── ContextWindowExceeded    the prompt does not fit this model
        ├── ProviderRejected         any other 4xx: the request itself is wrong
        └── MalformedResponse        a 2xx body we cannot read
"""

from __future__ import annotations

from collections.abc import Iterable


def field_path(loc: Iterable[str | int]) -> str:
    """A validation error's location as people write it: ``requests[3].messages``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class BrokerError(Exception):
    """Root of every error the broker raises on purpose."""


class ConfigError(BrokerError):
    def __init__(self, source: str, key: str, reason: str) -> None:
        self.source, self.key, self.reason = source, key, reason
        super().__init__(f"{source}: {key}: {reason}")


class InvalidRequest(BrokerError):
    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        self.message, self.field = message, field
        super().__init__(message)


class PayloadTooLarge(InvalidRequest):
    status_code = 413


class AuthenticationFailed(BrokerError):
    status_code = 401


class Forbidden(BrokerError):
    """The caller is known but not allowed: told apart from 401 so they fix the right thing."""

    status_code = 403


class NotFound(BrokerError):
    status_code = 404


class Conflict(BrokerError):
    """E.g. rotating a key that was already revoked."""

    status_code = 409


class TooManyRequests(BrokerError):
    """Refused for now: a team's runaway guard (``rate_limited``) or an exhausted budget under
    the ``reject`` policy (``budget_exceeded``). ``retry_after`` says when it may fit."""

    status_code = 429

    def __init__(self, message: str, *, type_: str, retry_after: float) -> None:
        self.message, self.type_, self.retry_after = message, type_, retry_after
        super().__init__(message)


class ServiceUnavailable(BrokerError):
    status_code = 503


class ProviderError(BrokerError):
    """A provider call failed. ``code`` is a short machine-readable reason stored on the request."""

    code = "provider_error"

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        provider_request_id: str | None = None,
    ) -> None:
        self.message, self.provider = message, provider
        self.status, self.provider_request_id = status, provider_request_id
        super().__init__(f"{provider}: {message}")


class ProviderRetryable(ProviderError):
    code = "provider_retryable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ProviderRateLimited(ProviderRetryable):
    code = "rate_limited"


class ProviderUnavailable(ProviderError):
    code = "provider_unavailable"


class CircuitOpen(ProviderError):
    """The provider's (or the model's) breaker is open: the call was not made."""

    code = "circuit_open"


class ContextWindowExceeded(ProviderError):
    code = "context_window_exceeded"


class ProviderRejected(ProviderError):
    code = "provider_rejected"


class MalformedResponse(ProviderError):
    code = "malformed_response"
