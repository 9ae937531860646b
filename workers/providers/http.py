"""The one HTTP call path shared by every provider: a pooled httpx client and error mapping.

One :class:`ProviderClient` per provider per worker process. It owns a single ``httpx.Client``
whose connection pool is sized from ``provider.concurrency`` and is shared by all worker
threads (httpx's pool is thread-safe), so connections are reused rather than opened per call.
Each :meth:`ProviderClient.complete` is exactly one attempt: retries, backoff and fallback to
another provider belong to the layer above, which needs the classified error to decide.

Every error leaves as a ``broker.errors.ProviderError`` subclass, with the provider's API key
scrubbed from its message: provider error bodies sometimes echo the key that was sent.
"""

from __future__ import annotations

import logging
import time
from types import TracebackType

import httpx

from broker.config import ModelConfig, ProviderConfig
from broker.errors import MalformedResponse, ProviderError, ProviderRetryable
from workers.providers import adapter_for
from workers.providers.base import Completion, WireAdapter

log = logging.getLogger(__name__)

#: Failing to connect is quick to detect; do not spend the whole call timeout on it.
CONNECT_TIMEOUT_S = 5.0
#: Idle pooled connections are closed after this long (providers drop them around 60s).
KEEPALIVE_EXPIRY_S = 30.0


class ProviderClient:
    """Calls one provider; safe to use from many threads at once."""

    def __init__(
        self,
        provider: ProviderConfig,
        api_key: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.provider = provider
        self.adapter: WireAdapter = adapter_for(provider.wire_format)
        self.__api_key = api_key  # private: never in repr, logs or exception messages
        self._client = httpx.Client(
            base_url=provider.base_url,
            transport=transport,
            timeout=httpx.Timeout(
                provider.timeout_s, connect=min(CONNECT_TIMEOUT_S, provider.timeout_s)
            ),
            limits=httpx.Limits(
                max_connections=provider.concurrency,
                max_keepalive_connections=provider.concurrency,
                keepalive_expiry=KEEPALIVE_EXPIRY_S,
            ),
            follow_redirects=False,
        )

    def complete(self, model: ModelConfig, payload: dict) -> Completion:
        """One attempt: a :class:`Completion`, or a classified ``ProviderError``."""
        call = self.adapter.build(model, payload, self.__api_key)
        started = time.monotonic()
        try:
            response = self._client.post(call.path, headers=call.headers, json=call.json)
        except httpx.TimeoutException as exc:
            connect = isinstance(exc, httpx.ConnectTimeout)
            limit = self._client.timeout.connect if connect else self.provider.timeout_s
            phase = "connect" if connect else "request"
            message = f"{phase} timed out after {limit:g}s ({type(exc).__name__})"
            raise self._error(ProviderRetryable, message) from exc
        except httpx.DecodingError as exc:
            raise self._error(MalformedResponse, f"undecodable body: {_describe(exc)}") from exc
        except httpx.TransportError as exc:
            raise self._error(ProviderRetryable, _transport_message(exc)) from exc
        except httpx.RequestError as exc:
            raise self._error(ProviderRetryable, f"request failed: {_describe(exc)}") from exc
        status, headers, body = response.status_code, response.headers, response.content
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug("provider=%s model=%s status=%d in %.0fms", self.provider.name, model.name,
                  status, elapsed_ms)
        if 200 <= status < 300:
            try:
                return self.adapter.parse(status, headers, body)
            except ProviderError as exc:
                self._own(exc)
                raise
        raise self._own(self.adapter.classify(status, headers, body, self.provider.name))

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ProviderClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ProviderClient(provider={self.provider.name!r}, wire={self.adapter.name!r}, "
            f"base_url={self.provider.base_url!r})"
        )

    def _error(self, cls: type[ProviderError], message: str) -> ProviderError:
        return self._own(cls(message, provider=self.provider.name))

    def _own(self, exc: ProviderError) -> ProviderError:
        """Stamp the error with this provider's name and scrub the API key from its message."""
        exc.provider = self.provider.name
        exc.message = self._scrub(exc.message)
        exc.args = (f"{exc.provider}: {exc.message}",)
        return exc

    def _scrub(self, text: str) -> str:
        key = self.__api_key
        return text.replace(key, "***") if key else text


def _transport_message(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {_describe(exc)}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broken by the server: {_describe(exc)}"
    return f"transport error: {_describe(exc)}"


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
