"""Every documented non-2xx response of both wire formats maps to the right error class."""

from __future__ import annotations

import json

import httpx
import pytest

from broker.errors import (
    ContextWindowExceeded,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRetryable,
    ProviderUnavailable,
)
from workers.providers import adapter_for


def json_bytes(obj: object) -> bytes:
    return json.dumps(obj).encode()


HTML = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def oai(message: str, type_: str, code: str | None = None) -> bytes:
    return json_bytes({"error": {"message": message, "type": type_, "param": None, "code": code}})


def ant(type_: str, message: str, request_id: str = "req_body") -> bytes:
    error = {"type": type_, "message": message}
    return json_bytes({"type": "error", "error": error, "request_id": request_id})


# (status, extra headers, body, expected class, expected retry_after, text in the message)
OPENAI_ROWS = [
    (429, {}, oai("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
     ProviderUnavailable, None, "exceeded your current quota"),
    (429, {"retry-after": "3"}, oai("Rate limit reached", "requests", "rate_limit_exceeded"),
     ProviderRateLimited, 3.0, "Rate limit reached"),
    (429, {"retry-after-ms": "1500", "retry-after": "2"}, oai("Slow down", "tokens"),
     ProviderRateLimited, 1.5, "Slow down"),
    (401, {}, oai("Incorrect API key provided", "invalid_request_error", "invalid_api_key"),
     ProviderUnavailable, None, "Incorrect API key"),
    (403, {}, oai("Not allowed in your region", "invalid_request_error", "unsupported_country"),
     ProviderUnavailable, None, "region"),
    (408, {}, oai("Request timed out", "timeout"), ProviderRetryable, None, "timed out"),
    (409, {}, oai("Conflict", "conflict"), ProviderRetryable, None, "Conflict"),
    (500, {}, oai("The server had an error", "server_error"),
     ProviderRetryable, None, "server had an error"),
    (503, {"retry-after": "4"}, oai("Overloaded", "server_error"), ProviderRetryable, 4.0, ""),
    (502, {"content-type": "text/html"}, HTML,
     ProviderRetryable, None, "HTTP 502 with a non-JSON body"),
    (400, {}, oai("This model's maximum context length is 128000 tokens.",
                  "invalid_request_error", "context_length_exceeded"),
     ContextWindowExceeded, None, "maximum context length"),
    (400, {}, json_bytes({"object": "error", "message": "This model's maximum context length "
                          "is 4096 tokens. However, you requested 5000 tokens.", "code": 400}),
     ContextWindowExceeded, None, "4096 tokens"),  # vLLM: no error code, only the message
    (400, {}, oai("Invalid 'messages[0].role'", "invalid_request_error"),
     ProviderRejected, None, "Invalid 'messages[0].role'"),
    (404, {}, oai("The model 'gpt-9' does not exist", "invalid_request_error", "model_not_found"),
     ProviderRejected, None, "does not exist"),
    (422, {}, json_bytes({"detail": "messages: field required"}),
     ProviderRejected, None, "field required"),
    (400, {"x-should-retry": "true"}, oai("Try again", "invalid_request_error"),
     ProviderRetryable, None, "Try again"),
    (500, {"x-should-retry": "false"}, oai("Do not retry this", "server_error"),
     ProviderRejected, None, "Do not retry"),
    (429, {"x-should-retry": "false"}, oai("Hard limit", "requests"),
     ProviderUnavailable, None, "Hard limit"),
    (401, {"x-should-retry": "true"}, oai("Bad key", "invalid_request_error"),
     ProviderUnavailable, None, "Bad key"),
]  # fmt: skip

ANTHROPIC_ROWS = [
    (429, {"retry-after": "10"}, ant("rate_limit_error", "Number of requests has exceeded"),
     ProviderRateLimited, 10.0, "rate_limit_error"),
    (401, {}, ant("authentication_error", "invalid x-api-key"),
     ProviderUnavailable, None, "invalid x-api-key"),
    (403, {}, ant("permission_error", "no access to this model"),
     ProviderUnavailable, None, "no access"),
    (408, {}, ant("timeout_error", "Request timed out"), ProviderRetryable, None, "timed out"),
    (409, {}, ant("conflict_error", "Conflict"), ProviderRetryable, None, "Conflict"),
    (500, {}, ant("api_error", "Internal server error"),
     ProviderRetryable, None, "Internal server error"),
    (529, {"retry-after": "2"}, ant("overloaded_error", "Overloaded"),
     ProviderRetryable, 2.0, "overloaded_error"),
    (502, {"content-type": "text/html"}, HTML,
     ProviderRetryable, None, "HTTP 502 with a non-JSON body"),
    (400, {}, ant("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
     ContextWindowExceeded, None, "prompt is too long"),
    (400, {}, ant("invalid_request_error",
                  "input length and `max_tokens` exceed context limit: 190000 + 20000 > 200000"),
     ContextWindowExceeded, None, "context limit"),
    (413, {}, ant("request_too_large", "Request exceeds the maximum allowed number of bytes."),
     ContextWindowExceeded, None, "request_too_large"),
    (400, {}, ant("invalid_request_error", "messages: at least one message is required"),
     ProviderRejected, None, "at least one message"),
    (404, {}, ant("not_found_error", "model: claude-9"), ProviderRejected, None, "claude-9"),
    (500, {"x-should-retry": "false"}, ant("api_error", "Do not retry this"),
     ProviderRejected, None, "Do not retry"),
]  # fmt: skip


def _check(wire: str, row: tuple, rid_header: str) -> ProviderError:
    status, extra, body, cls, retry_after, text = row
    headers = httpx.Headers({"content-type": "application/json", rid_header: "req_hdr", **extra})
    error = adapter_for(wire).classify(status, headers, body, "prov-x")
    assert type(error) is cls, (status, error)
    assert error.status == status
    assert error.provider == "prov-x"
    assert error.provider_request_id == "req_hdr"
    assert text in error.message
    assert str(error).startswith("prov-x: ")
    if isinstance(error, ProviderRetryable):
        assert error.retry_after == retry_after
    return error


@pytest.mark.parametrize("row", OPENAI_ROWS, ids=lambda r: f"{r[0]}-{r[3].__name__}")
def test_openai_classification(row: tuple) -> None:
    _check("openai", row, "x-request-id")


@pytest.mark.parametrize("row", ANTHROPIC_ROWS, ids=lambda r: f"{r[0]}-{r[3].__name__}")
def test_anthropic_classification(row: tuple) -> None:
    _check("anthropic", row, "request-id")


def test_anthropic_request_id_from_body_when_no_header() -> None:
    body = ant("api_error", "boom", request_id="req_from_body")
    error = adapter_for("anthropic").classify(500, httpx.Headers(), body, "p")
    assert error.provider_request_id == "req_from_body"


def test_non_json_error_without_content_type_still_classifies() -> None:
    for wire in ("openai", "anthropic"):
        error = adapter_for(wire).classify(503, httpx.Headers(), b"upstream connect error", "p")
        assert isinstance(error, ProviderRetryable)
        assert error.message.startswith("HTTP 503 with a non-JSON body")
        assert error.provider_request_id is None


def test_unexpected_redirect_means_misconfigured_endpoint() -> None:
    error = adapter_for("openai").classify(302, httpx.Headers(), b"", "p")
    assert isinstance(error, ProviderUnavailable)
