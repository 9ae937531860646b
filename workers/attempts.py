"""One attempt's provider calls: through the breakers, retried with backoff and jitter.

An attempt (one dispatch of a request) calls its provider once, or up to ``[retries] tries``
times when the error is retryable (5xx, Anthropic's 529, timeouts, connection errors). Between
tries it sleeps with exponential backoff and full jitter (tenacity), and at least as long as the
provider's ``retry-after``/``retry-after-ms``; an ask longer than ``max_retry_after_s`` ends the
attempt instead of holding a pool thread, and the request goes down its chain. A 429 is not
retried here: the scheduler holds the whole provider back for its ``retry-after``.

Before each call the breakers are asked (:mod:`workers.breakers`); an open one ends the attempt
with :class:`~broker.errors.CircuitOpen` and no call. Failed calls are reported to the breakers
at once, so they open while the retries are still going; whether the last answer showed a
healthy provider is left to the caller, which reports it with the attempt's other feedback in
one round trip.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from broker.config.broker_toml import BrokerConfig, ModelConfig
from broker.deltas import DeltaWriter
from broker.errors import (
    CircuitOpen,
    ContextWindowExceeded,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRetryable,
    ProviderUnavailable,
)
from broker.store.transitions import Call
from workers.breakers import Breakers
from workers.providers import Completion, ProviderClient, completion_cost


@dataclass(frozen=True, slots=True)
class AttemptResult:
    completion: Completion | None
    error: Exception | None
    calls: tuple[Call, ...]
    #: The last call showed the provider working (a completion, or an error about the request
    #: itself): the caller reports a success to the breakers.
    healthy: bool

    @property
    def retry_after(self) -> float | None:
        return getattr(self.error, "retry_after", None)


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderRetryable) and not isinstance(exc, ProviderRateLimited)


def _healthy_answer(exc: BaseException | None) -> bool:
    """The provider answered sensibly: the request was the problem, not the provider."""
    return exc is None or isinstance(exc, ProviderRejected | ContextWindowExceeded)


class Attempts:
    def __init__(
        self,
        config: BrokerConfig,
        breakers: Breakers,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._config = config
        self._breakers = breakers
        self._sleep = sleep
        retries = config.retries
        self._jitter = wait_random_exponential(
            multiplier=retries.backoff_s, max=retries.max_backoff_s
        )

    def run(
        self,
        client: ProviderClient,
        model: ModelConfig,
        payload: dict,
        deltas: DeltaWriter | None = None,
    ) -> AttemptResult:
        """The attempt's calls; with ``deltas``, each call streams and publishes its text."""
        calls: list[Call] = []
        provider = client.provider.name

        def call_once() -> Completion:
            refused = self._breakers.admit(provider, model.name)
            if refused is not None:
                raise CircuitOpen(f"circuit breaker {refused} is open", provider=provider)
            started = time.monotonic()
            try:
                if deltas is None:
                    completion = client.complete(model, payload)
                else:
                    sink = deltas.call()
                    completion = client.stream(model, payload, sink, sink.started)
            except Exception as exc:
                code = exc.code if isinstance(exc, ProviderError) else "internal_error"
                calls.append(Call(model.name, provider, code, _ms(started), str(exc)))
                if isinstance(exc, ProviderUnavailable):
                    self._breakers.record(provider, model.name, "unavailable")
                elif not _healthy_answer(exc) and not isinstance(exc, ProviderRateLimited):
                    self._breakers.record(provider, model.name, "failure")
                raise
            cost = completion_cost(completion, model)
            calls.append(Call(model.name, provider, "succeeded", _ms(started), cost_micros=cost))
            return completion

        try:
            completion = call_once()
        except Exception as first:  # tenacity decides, seeing this as its first try's error
            try:
                completion = self._retrying()(_replayed(first, call_once))
            except Exception as exc:  # classified for the caller; a bug fails only this request
                healthy = _healthy_answer(exc) and not isinstance(exc, CircuitOpen)
                return AttemptResult(None, exc, tuple(calls), healthy)
        return AttemptResult(completion, None, tuple(calls), True)

    def _retrying(self) -> Retrying:
        """What paces the tries after a first one failed. Entered only then: most attempts
        succeed at once, and tenacity's bookkeeping was a tenth of a pool's CPU."""
        return Retrying(
            sleep=self._sleep,
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(self._config.retries.tries) | self._asks_too_long,
            wait=self._wait,
            reraise=True,
        )

    def _wait(self, state: RetryCallState) -> float:
        """Backoff with full jitter, never shorter than the provider's ``retry-after``."""
        asked = getattr(state.outcome.exception(), "retry_after", None) or 0.0
        return max(self._jitter(state), asked)

    def _asks_too_long(self, state: RetryCallState) -> bool:
        asked = getattr(state.outcome.exception(), "retry_after", None) or 0.0
        return asked > self._config.retries.max_retry_after_s


def _replayed(error: Exception, call: Callable[[], Completion]) -> Callable[[], Completion]:
    """``call``, whose first run raises ``error`` (what the try already made raised) instead of
    calling again: the retries then follow exactly as if tenacity had made that try."""
    pending = [error]

    def again() -> Completion:
        if pending:
            raise pending.pop()
        return call()

    return again


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
