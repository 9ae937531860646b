"""The one HTTP call path shared by every provider: a pooled httpx client and error mapping.

One :class:`ProviderClient` per provider per worker process, used by all of the pool's threads.
Each thread gets its own small ``httpx.Client`` (connections kept alive and reused, one TLS
context shared by all), so the pool holds about one connection per thread, as many as the
provider's ``concurrency``.
Each :meth:`ProviderClient.complete` is exactly one attempt: retries, backoff and fallback to
another provider belong to the layer above, which needs the classified error to decide.
:meth:`ProviderClient.stream` is the same attempt with the answer read as server-sent events
(``httpx-sse``), each piece of text handed to a callback as it arrives; the adapter's stream
reader turns the events into the same :class:`Completion`, and failures map the same way.

Every error leaves as a ``broker.errors.ProviderError`` subclass, with the provider's API key
scrubbed from its message: provider error bodies sometimes echo the key that was sent.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import replace
from types import TracebackType

import httpx
import httpx_sse

from broker import jsontext
from broker.config.broker_toml import ModelConfig, ProviderConfig
from broker.errors import MalformedResponse, ProviderError, ProviderRetryable
from workers.providers import adapter_for
from workers.providers.base import Completion, HttpCall, RateSignal, WireAdapter

log = logging.getLogger(__name__)

#: Failing to connect is quick to detect; do not spend the whole call timeout on it.
CONNECT_TIMEOUT_S = 5.0
#: A pool thread makes one call at a time; a spare covers a connection being torn down.
CONNECTIONS_PER_THREAD = 2
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
        self._transport = transport
        self._ssl = ssl.create_default_context()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()
        self._urls: dict[str, httpx.URL] = {}

    @property
    def _client(self) -> httpx.Client:
        """This thread's own small pool.

        httpcore checks every pooled connection on each request (a ``select`` per idle one), so
        one pool of a hundred connections shared by a hundred threads costs a hundred syscalls
        per call. A pool per thread keeps connections reused and the check O(1); the TLS
        context (the costly part of a client) is shared.
        """
        client = getattr(self._local, "client", None)
        if client is None:
            provider = self.provider
            client = httpx.Client(
                base_url=provider.base_url,
                transport=self._transport,
                verify=self._ssl,
                timeout=httpx.Timeout(
                    provider.timeout_s, connect=min(CONNECT_TIMEOUT_S, provider.timeout_s)
                ),
                limits=httpx.Limits(
                    max_connections=CONNECTIONS_PER_THREAD,
                    max_keepalive_connections=CONNECTIONS_PER_THREAD,
                    keepalive_expiry=KEEPALIVE_EXPIRY_S,
                ),
                follow_redirects=False,
            )
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _url(self, path: str) -> httpx.URL:
        """``path`` under the provider's base URL, parsed once (httpx parses a string, and
        checks its host, on every request)."""
        url = self._urls.get(path)
        if url is None:
            url = self._urls[path] = self._client.build_request("POST", path).url
        return url

    def complete(self, model: ModelConfig, payload: dict) -> Completion:
        """One attempt: a :class:`Completion`, or a classified ``ProviderError``."""
        with self._calling():
            call = self.adapter.build(model, payload, self.__api_key)
            started = time.monotonic()
            response = self._client.send(self._request(call))
            status, headers, body = response.status_code, response.headers, response.content
            self._log(model, status, started)
            if not 200 <= status < 300:
                raise self.adapter.classify(status, headers, body, self.provider.name)
            completion = (call.reader or self.adapter.parse)(status, headers, body)
            return replace(completion, rate=RateSignal.from_headers(headers))

    def stream(
        self,
        model: ModelConfig,
        payload: dict,
        on_delta: Callable[[str], None],
        on_start: Callable[[tuple[int, int]], None] | None = None,
    ) -> Completion:
        """One attempt, streamed: ``on_delta`` gets each piece of the answer's text as it
        arrives, in order, and the result is the :class:`Completion` :meth:`complete` would
        have returned for the same answer (the pieces joined are its text). ``on_start`` gets
        the input tokens (uncached, cached) once, before the text, when the provider reports
        them at the start (Anthropic's Messages; an OpenAI stream reports usage at its end).

        Errors are those of :meth:`complete`, plus the classified error of an error event sent
        mid-stream and ``MalformedResponse`` for a stream that ended early or is no event stream
        at all. An exception raised by ``on_delta`` ends the call (the response is closed) and
        propagates as it is. Embeddings have no stream: an embedding payload is sent by
        :meth:`complete` and ``on_delta`` is not called.
        """
        if payload.get("kind") == "embedding":
            return self.complete(model, payload)
        deltas = self._streamed(model, payload)
        with closing(deltas):
            while True:
                try:
                    piece = next(deltas)
                except StopIteration as done:
                    return done.value
                # Outside the call's error mapping: their errors are the caller's.
                if isinstance(piece, str):
                    on_delta(piece)
                elif on_start is not None:
                    on_start(piece)

    def _streamed(
        self, model: ModelConfig, payload: dict
    ) -> Generator[str | tuple[int, int], None, Completion]:
        """The streamed call: yields the input tokens once the reader knows them, and each
        non-empty text delta; returns the completion."""
        with self._calling():
            call = self.adapter.stream_build(model, payload, self.__api_key)
            started = time.monotonic()
            with closing(self._client.send(self._request(call), stream=True)) as response:
                status, headers = response.status_code, response.headers
                self._log(model, status, started)
                if not 200 <= status < 300:
                    body = response.read()
                    raise self.adapter.classify(status, headers, body, self.provider.name)
                _require_event_stream(status, headers, self.provider.name)
                reader = self.adapter.stream_reader(status, headers)
                reported = False
                for event in httpx_sse.EventSource(response).iter_sse():
                    text = reader.feed(event.event, event.data)
                    if not reported and reader.input_tokens is not None:
                        reported = True
                        yield reader.input_tokens
                    if text:
                        yield text
                completion = reader.finish()
            log.debug(
                "provider=%s model=%s stream ended after %.0fms",
                self.provider.name,
                model.name,
                (time.monotonic() - started) * 1000,
            )
            return replace(completion, rate=RateSignal.from_headers(headers))

    def close(self) -> None:
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

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

    def _request(self, call: HttpCall) -> httpx.Request:
        headers = {**call.headers, "content-type": "application/json"}
        return self._client.build_request(
            "POST", self._url(call.path), headers=headers, content=jsontext.body(call.json)
        )

    def _log(self, model: ModelConfig, status: int, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        log.debug(
            "provider=%s model=%s status=%d in %.0fms",
            self.provider.name,
            model.name,
            status,
            elapsed_ms,
        )

    @contextmanager
    def _calling(self) -> Iterator[None]:
        """Every failure of a call as a ``ProviderError`` owned by this provider.

        Shared by :meth:`complete` and :meth:`stream`: an adapter's refusal or classification
        is stamped and scrubbed; an httpx failure (while sending, or while reading a stream)
        becomes ``ProviderRetryable``, or ``MalformedResponse`` for a body that cannot be
        decoded. Anything else is not the provider's doing and passes untouched.
        """
        try:
            yield
        except ProviderError as exc:
            self._own(exc)
            raise
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


def _require_event_stream(status: int, headers: httpx.Headers, provider: str) -> None:
    """A 2xx to a streamed call must be an event stream: a JSON body here means the server
    ignored ``stream``, an HTML page a proxy in the way; neither can be read as events."""
    content_type = headers.get("content-type", "")
    if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
        raise MalformedResponse(
            f"HTTP {status}: expected an event stream, got content type {content_type!r}",
            provider=provider,
            status=status,
        )


def _transport_message(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect: {_describe(exc)}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"connection broken by the server: {_describe(exc)}"
    return f"transport error: {_describe(exc)}"


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
