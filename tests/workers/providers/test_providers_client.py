"""ProviderClient end to end over httpx.MockTransport: one attempt, errors mapped, key scrubbed."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from broker.errors import MalformedResponse, ProviderRetryable, ProviderUnavailable
from workers.providers import ProviderClient

KEY = "sk-live-0123456789abcdefSECRET"
Handler = Callable[[httpx.Request], httpx.Response]


def client_for(provider, handler: Handler, key: str | None = KEY) -> ProviderClient:
    return ProviderClient(provider, key, transport=httpx.MockTransport(handler))


def test_openai_success(openai_provider, mini, payload, openai_example) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=openai_example, headers={"x-request-id": "req_9"})

    with client_for(openai_provider, handler) as client:
        completion = client.complete(mini, payload)
    assert completion.text == "Hello there." and completion.provider_request_id == "req_9"
    (request,) = seen
    assert request.method == "POST"
    assert str(request.url) == "http://sim.test/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content)["model"] == "gpt-4o-mini-2024-07-18"


def test_anthropic_success(anthropic_provider, haiku, payload, anthropic_example) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=anthropic_example, headers={"request-id": "req_a"})

    with client_for(anthropic_provider, handler) as client:
        completion = client.complete(haiku, payload)
    assert (completion.finish_reason, completion.provider_request_id) == ("end_turn", "req_a")
    (request,) = seen
    assert str(request.url) == "http://sim.test/v1/messages"
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert json.loads(request.content)["system"] == "Be brief."


def test_keyless_provider_sends_no_auth(openai_provider, mini, payload, openai_example) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert "authorization" not in request.headers
        return httpx.Response(200, json=openai_example)

    with client_for(openai_provider, handler, key=None) as client:
        assert client.complete(mini, payload).output_tokens == 30


def test_error_status_is_classified_with_provider_name(openai_provider, mini, payload) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": "Rate limit", "type": "requests", "code": None}}
        return httpx.Response(429, json=body, headers={"retry-after": "2", "x-request-id": "r"})

    with client_for(openai_provider, handler) as client, pytest.raises(ProviderRetryable) as info:
        client.complete(mini, payload)
    error = info.value
    assert (error.provider, error.status, error.retry_after) == ("sim-openai", 429, 2.0)
    assert error.code == "rate_limited" and error.provider_request_id == "r"


def test_malformed_2xx_names_the_provider(anthropic_provider, haiku, payload) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"content-type": "application/json"}
        return httpx.Response(200, content=b'{"id": "msg_1", "content": [', headers=headers)

    with client_for(anthropic_provider, handler) as client:
        with pytest.raises(MalformedResponse, match="sim-anthropic: HTTP 200: truncated JSON"):
            client.complete(haiku, payload)


@pytest.mark.parametrize(
    ("exc", "text"),
    [
        (httpx.ReadTimeout("read timed out"), "request timed out after 2.5s (ReadTimeout)"),
        (httpx.ConnectTimeout("connect timed out"), "connect timed out after 2.5s"),
        (httpx.PoolTimeout("pool exhausted"), "request timed out after 2.5s (PoolTimeout)"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "could not connect: ConnectError"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."),
         "connection broken by the server"),
        (httpx.ReadError("connection reset"), "transport error: ReadError: connection reset"),
    ],
)  # fmt: skip
def test_transport_failures_are_retryable(
    openai_provider, mini, payload, exc: httpx.TransportError, text: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    with client_for(openai_provider, handler) as client, pytest.raises(ProviderRetryable) as info:
        client.complete(mini, payload)
    assert text in str(info.value)
    assert info.value.provider == "sim-openai" and info.value.status is None
    assert info.value.__cause__ is exc


def test_api_key_is_scrubbed_from_errors(openai_provider, mini, payload) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        body = {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "x"}}
        return httpx.Response(401, json=body)

    with client_for(openai_provider, handler) as client:
        with pytest.raises(ProviderUnavailable) as info:
            client.complete(mini, payload)
        assert KEY not in repr(client)
    error = info.value
    for shown in (str(error), repr(error), error.message, *map(str, error.args)):
        assert KEY not in shown
    assert "Incorrect API key provided: ***." in str(error)


def test_api_key_is_scrubbed_from_transport_and_malformed_errors(
    anthropic_provider, haiku, payload
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"proxy refused key {KEY}")

    def echo(request: httpx.Request) -> httpx.Response:
        body = {"type": "error", "error": {"type": "api_error", "message": f"bad {KEY}"}}
        return httpx.Response(200, json=body)

    for handler, cls in ((refuse, ProviderRetryable), (echo, MalformedResponse)):
        with client_for(anthropic_provider, handler) as client, pytest.raises(cls) as info:
            client.complete(haiku, payload)
        assert KEY not in str(info.value) and KEY not in repr(info.value)
        assert "***" in str(info.value)


def test_api_key_never_logged(openai_provider, mini, payload, caplog) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": f"key {KEY}", "type": "e"}})

    caplog.set_level(logging.DEBUG)
    with client_for(openai_provider, handler) as client, pytest.raises(ProviderRetryable):
        client.complete(mini, payload)
    assert KEY not in caplog.text


def test_pool_and_timeouts_come_from_config(openai_provider) -> None:
    with ProviderClient(openai_provider, KEY) as client:
        timeout = client._client.timeout
        assert (timeout.read, timeout.connect) == (2.5, 2.5)
        assert str(client._client.base_url) == "http://sim.test"
    assert client._client.is_closed


def test_shared_across_threads(openai_provider, mini, payload, openai_example) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=openai_example)

    with client_for(openai_provider, handler) as client, ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: client.complete(mini, payload), range(64)))
    assert {r.output_tokens for r in results} == {30}
