"""What every wire format shares: the completion record, the adapter contract and small helpers.

A wire adapter is pure data transformation (Portkey-style): it builds an :class:`HttpCall`, reads
a 2xx body (or, through a :class:`StreamReader`, a streamed answer's events) into a
:class:`Completion` and turns a non-2xx response into a ``ProviderError``. It never does I/O;
:mod:`workers.providers.http` is the one place that talks HTTP. Keeping the adapters pure is
what lets them be tested from literal bytes and lets a new provider kind be a new folder
instead of another branch in the HTTP path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol, TypeVar, overload

import httpx

from broker.config.broker_toml import ModelConfig
from broker.errors import (
    MalformedResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRetryable,
    ProviderUnavailable,
)
from broker.money import cost_micros

__all__ = [
    "Completion",
    "HttpCall",
    "RateSignal",
    "StreamReader",
    "Unsupported",
    "WireAdapter",
    "cache_savings",
    "completion_cost",
    "parse_retry_after",
]

#: Request headers that carry credentials; their values never appear in a ``repr``.
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization"})


@dataclass(frozen=True, slots=True)
class RateSignal:
    """What a provider's response headers said remains of its limits (None: not said)."""

    remaining_requests: int | None = None
    remaining_tokens: int | None = None

    @classmethod
    def from_headers(cls, headers: httpx.Headers) -> RateSignal | None:
        """OpenAI's ``x-ratelimit-remaining-*`` or Anthropic's ``anthropic-ratelimit-*``."""
        requests = _count_header(
            headers, "x-ratelimit-remaining-requests", "anthropic-ratelimit-requests-remaining"
        )
        tokens = _count_header(
            headers, "x-ratelimit-remaining-tokens", "anthropic-ratelimit-tokens-remaining"
        )
        if requests is None and tokens is None:
            return None
        return cls(requests, tokens)


def _count_header(headers: httpx.Headers, *names: str) -> int | None:
    for name in names:
        raw = headers.get(name)
        if raw is not None and raw.strip().isdigit():
            return int(raw.strip())
    return None


@dataclass(frozen=True)
class Completion:
    """One finished completion, in the broker's terms.

    Token counts are split by the price they are billed at, so costing never needs to know
    which provider produced them: ``input_tokens`` are *uncached* input tokens (input price),
    ``cached_input_tokens`` are billed at the cached-input price.
    """

    text: str
    finish_reason: str
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    provider_request_id: str | None
    model: str
    rate: RateSignal | None = None
    #: The stop sequence that ended the answer, when the wire format says which.
    stop_sequence: str | None = None


@dataclass(frozen=True)
class HttpCall:
    """A request an adapter wants made: a path relative to the provider's base URL, and the
    reader of its 2xx body when it is not the adapter's ``parse`` (another endpoint's)."""

    path: str
    headers: dict[str, str]
    json: dict[str, Any]
    reader: Callable[[int, httpx.Headers, bytes], Completion] | None = None

    def __repr__(self) -> str:
        # The dataclass default would print the API key from the auth header.
        shown = {k: ("***" if k.lower() in SECRET_HEADERS else v) for k, v in self.headers.items()}
        return f"HttpCall(path={self.path!r}, headers={shown!r}, json=<{len(self.json)} keys>)"


@dataclass(frozen=True, slots=True)
class Unsupported:
    """A parameter of the stored request that this wire format cannot honour, and why.

    Never dropped silently: an answer to a different question is worse than an error.
    Submission refuses such a request for the model it names (a 400), and ``build`` raises
    it as ``ProviderRejected`` for one that reaches the model anyway (down a fallback chain):
    not retried, not a provider failure, and the request fails naming the parameter.
    """

    param: str
    reason: str

    def rejected(self, provider: str) -> ProviderRejected:
        return ProviderRejected(f"{self.param}: {self.reason}", provider=provider)


class StreamReader(Protocol):
    """Reads one streamed response, one server-sent event at a time; a new one per call.

    The streamed counterpart of :meth:`WireAdapter.parse`: what :meth:`finish` returns is the
    :class:`Completion` ``parse`` would have read from the same answer sent whole.
    """

    #: The input tokens (uncached, cached) the provider reported before the text (Anthropic's
    #: ``message_start``); None until then, and throughout from a format that reports usage
    #: only at the end (OpenAI's).
    input_tokens: tuple[int, int] | None

    def feed(self, event: str, data: str) -> str | None:
        """Take one event (its name, "message" or "" when it had none, and its data) and
        return the answer text it adds, or None. Raises ``MalformedResponse`` for an event
        that cannot be read, and the classified ``ProviderError`` for an error event."""
        ...

    def finish(self) -> Completion:
        """The whole completion, once the stream has ended; ``MalformedResponse`` naming
        what never arrived when it ended early."""
        ...


class StreamAccumulator:
    """What each wire format's :class:`StreamReader` keeps alike: the status and request-id
    headers it was answered with, the id and model the body names, the text so far, and how
    a broken stream is reported. Subclasses set :attr:`provider` and :attr:`id_headers`."""

    provider: str
    id_headers: tuple[str, ...]

    def __init__(self, status: int = 200, headers: httpx.Headers | None = None) -> None:
        self._status = status
        self._header_rid = request_id(headers or httpx.Headers(), *self.id_headers)
        self._body_id: str | None = None
        self._model: str | None = None
        self._parts: list[str] = []
        self.input_tokens: tuple[int, int] | None = None

    @property
    def _rid(self) -> str | None:
        """The request id: the header's, else the id in the body."""
        return self._header_rid or self._body_id

    def _malformed(self, what: str) -> MalformedResponse:
        return MalformedResponse(
            f"HTTP {self._status} event stream: {what}",
            provider=self.provider,
            status=self._status,
            provider_request_id=self._rid,
        )


class WireAdapter(Protocol):
    """The contract each wire-format folder implements; no I/O, no provider-name branches."""

    name: str

    def unsupported(self, payload: dict) -> Unsupported | None:
        """The first parameter of ``payload`` this wire format cannot honour, or None."""
        ...

    def build(self, model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
        """Map the broker's stored request onto this wire format; raise ``ProviderRejected``
        for what :meth:`unsupported` names."""
        ...

    def parse(self, status: int, headers: httpx.Headers, body: bytes) -> Completion:
        """Read a 2xx body; raise ``MalformedResponse`` saying what is wrong with it."""
        ...

    def stream_build(self, model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
        """:meth:`build`'s call asking for the answer as a server-sent event stream.

        Only chat payloads stream: an embedding payload raises ``ProviderRejected`` (callers
        send those with :meth:`build`, as ``ProviderClient.stream`` does).
        """
        ...

    def stream_reader(
        self, status: int = 200, headers: httpx.Headers | None = None
    ) -> StreamReader:
        """A fresh reader for one stream; ``status`` and ``headers`` (the response's) give the
        request id and the context of its errors, as they do for :meth:`parse`."""
        ...

    def classify(
        self, status: int, headers: httpx.Headers, body: bytes, provider: str
    ) -> ProviderError:
        """Turn a non-2xx response into the ``ProviderError`` subclass callers act on."""
        ...


def completion_cost(completion: Completion, model: ModelConfig) -> int:
    """Cost of one completion in integer micro-dollars at the model's configured prices."""
    return cost_micros(
        [
            (completion.input_tokens, model.input_price),
            (completion.cached_input_tokens, model.cached_input_price),
            (completion.output_tokens, model.output_price),
        ]
    )


def cache_savings(completion: Completion, model: ModelConfig) -> int:
    """Micro-dollars the cached input tokens saved against the full input price."""
    return cost_micros(
        [(completion.cached_input_tokens, model.input_price - model.cached_input_price)]
    )


def parse_retry_after(headers: httpx.Headers | Mapping[str, str]) -> float | None:
    """Seconds the provider asks us to wait, or None when it did not say (or said garbage).

    ``retry-after-ms`` (OpenAI) is the more precise and wins; ``retry-after`` may be seconds or
    an HTTP date (RFC 9110), a date in the past meaning "now" (0.0).
    """
    headers = headers if isinstance(headers, httpx.Headers) else httpx.Headers(headers)
    millis = _non_negative_float(headers.get("retry-after-ms"))
    if millis is not None:
        return millis / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _non_negative_float(raw)
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT; naive results come from "-0000".
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _non_negative_float(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


# --- reading JSON bodies ------------------------------------------------------------------------


class BodyError(ValueError):
    """Why a body is unreadable; adapters turn it into ``MalformedResponse`` or a status message."""


def request_id(headers: httpx.Headers, *names: str) -> str | None:
    """The first non-empty request-id header among ``names``."""
    for name in names:
        value = headers.get(name)
        if value:
            return value
    return None


def decode_json_object(headers: httpx.Headers, body: bytes) -> dict[str, Any]:
    """The body as a JSON object, or ``BodyError`` naming the problem.

    A declared non-JSON content type (an HTML error page from a proxy, say) is refused before
    decoding; a missing content type is tolerated because some compatible servers omit it.
    """
    content_type = headers.get("content-type", "")
    media = content_type.split(";", 1)[0].strip().lower()
    if media and media != "application/json" and not media.endswith("+json"):
        raise BodyError(f"expected a JSON body, got content type {content_type!r}")
    if not body.strip():
        raise BodyError("empty body")
    try:
        data = json.loads(body)
    except UnicodeDecodeError as exc:
        raise BodyError(f"body is not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        if exc.pos >= len(exc.doc.rstrip()) or exc.msg.startswith("Unterminated string"):
            raise BodyError(
                f"truncated JSON body ({len(body)} bytes): {exc.msg} at char {exc.pos}"
            ) from exc
        raise BodyError(f"invalid JSON body: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(data, dict):
        raise BodyError(f"JSON body is {_type_name(data)}, expected an object")
    return data


def decode_event(data: str) -> dict[str, Any]:
    """One server-sent event's data as a JSON object, or ``BodyError`` naming the problem."""
    try:
        value = json.loads(data)
    except json.JSONDecodeError as exc:
        raise BodyError(f"invalid JSON in an event: {exc.msg} at char {exc.pos}") from exc
    if not isinstance(value, dict):
        raise BodyError(f"event data is {_type_name(value)}, expected an object")
    return value


def as_stream(call: HttpCall, **body: Any) -> HttpCall:
    """``call`` asking for an event stream: ``body`` added to its JSON, SSE accepted."""
    headers = {**call.headers, "accept": "text/event-stream"}
    return replace(call, headers=headers, json={**call.json, **body})


T = TypeVar("T")


@overload
def field(obj: Mapping[str, Any], path: str, kind: type[T]) -> T: ...


@overload
def field(obj: Mapping[str, Any], path: str, kind: type[T], *, optional: bool) -> T | None: ...


def field(obj: Mapping[str, Any], path: str, kind: type[T], *, optional: bool = False) -> T | None:
    """``obj[a][0][b]…`` for the dotted ``path`` ("choices.0.message"), checked to be ``kind``.

    Raises ``BodyError`` naming the path when a step is missing or has the wrong JSON type;
    with ``optional`` a missing or null value is None instead. Booleans are refused where
    integers are wanted (``True`` is an ``int`` in Python, not in JSON).
    """
    value: Any = obj
    walked: list[str] = []
    for part in path.split("."):
        if value is not None:
            if isinstance(value, list) and part.isdigit():
                value = value[int(part)] if int(part) < len(value) else None
            elif isinstance(value, Mapping):
                value = value.get(part)
            else:
                where = ".".join(walked) or "body"
                raise BodyError(f"field {where!r} is {_type_name(value)}, expected an object")
        walked.append(part)
        if value is None:
            if optional:
                return None
            raise BodyError(f"missing field {path!r}")
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BodyError(f"field {path!r} is {_type_name(value)}, expected {_KIND_NAMES[kind]}")
    return value


def token_count(obj: Mapping[str, Any], path: str, *, optional: bool = False) -> int:
    """A non-negative integer token count (missing optional counts are 0)."""
    value = field(obj, path, int, optional=optional)
    if value is None:
        return 0
    if value < 0:
        raise BodyError(f"field {path!r} is negative ({value})")
    return value


_KIND_NAMES: dict[type, str] = {
    int: "an integer",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- classifying errors -------------------------------------------------------------------------


def error_snippet(body: bytes, limit: int = 120) -> str:
    """A short, single-line preview of a non-JSON error body (e.g. a proxy's HTML page)."""
    text = " ".join(body.decode("utf-8", errors="replace").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def classify_status(
    status: int,
    headers: httpx.Headers,
    message: str,
    *,
    provider: str,
    provider_request_id: str | None,
) -> ProviderError:
    """The status-driven part of classification shared by every wire format.

    Adapters handle what only their body can tell (context window, quota) first and fall back
    to this table. ``x-should-retry`` (honoured by the official SDKs) overrides the status for
    everything except auth failures: ``true`` makes any status retryable, ``false`` makes a
    429 ``ProviderUnavailable`` (a limit that will not lift by waiting) and anything else
    ``ProviderRejected``.
    """
    kw: dict[str, Any] = {"provider": provider, "status": status}
    kw["provider_request_id"] = provider_request_id
    if status in (401, 403):
        return ProviderUnavailable(message, **kw)
    retry_after = parse_retry_after(headers)
    should_retry = (headers.get("x-should-retry") or "").strip().lower()
    if should_retry == "false":
        if status == 429:
            return ProviderUnavailable(message, **kw)
        return ProviderRejected(message, **kw)
    if status == 429:
        return ProviderRateLimited(message, retry_after=retry_after, **kw)
    if should_retry == "true" or status in (408, 409) or status >= 500:
        return ProviderRetryable(message, retry_after=retry_after, **kw)
    if 400 <= status < 500:
        return ProviderRejected(message, **kw)
    # 1xx/3xx: the base URL points somewhere that is not this API; stop calling it.
    return ProviderUnavailable(f"unexpected {message}", **kw)
