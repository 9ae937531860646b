"""One attempt's calls: retries with backoff honouring retry-after, through real breakers in Redis.

The provider is a scripted fake (this is retry logic, not HTTP) and ``sleep`` records the waits
instead of sleeping.
"""

from __future__ import annotations

import random
import time

import pytest

from broker.config.broker_toml import BrokerConfig, load_config
from broker.config.resilience import BreakerConfig, RetryConfig
from broker.errors import (
    CircuitOpen,
    ContextWindowExceeded,
    MalformedResponse,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRetryable,
    ProviderUnavailable,
)
from workers.attempts import Attempts
from workers.breakers import Breakers
from workers.providers import Completion, completion_cost

P, M = "sim-openai", "gpt-4o-mini"
PROVIDER, MODEL = f"provider:{P}", f"model:{M}"


def make_config(**retries: object) -> BrokerConfig:
    """Tiny backoffs; breakers that only an "unavailable" opens, unless told otherwise."""
    breakers = retries.pop("breakers", {})
    settings = {"tries": 3, "backoff_s": 0.01, "max_backoff_s": 0.05, "max_retry_after_s": 1.0}
    return load_config().model_copy(
        update={
            "retries": RetryConfig(**{**settings, **retries}),
            "breakers": BreakerConfig(
                **{"min_calls": 1000, "consecutive_failures": 1000, **breakers}
            ),
        }
    )


def completion(input_tokens: int = 1000, output_tokens: int = 500) -> Completion:
    return Completion("hi", "stop", input_tokens, 0, output_tokens, "req_1", M)


class FakeClient:
    """``complete`` answers from a script: a Completion is returned, an exception raised."""

    def __init__(self, config: BrokerConfig, *script: Completion | Exception) -> None:
        self.provider = config.provider(P)
        self.script = list(script)
        self.called = 0

    def complete(self, model, payload):
        self.called += 1
        item = self.script.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


class Waits(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def retryable(retry_after: float | None = None) -> ProviderRetryable:
    return ProviderRetryable("HTTP 503", provider=P, status=503, retry_after=retry_after)


@pytest.fixture
def run(redis_client):
    """run(config, *script) → (result, client, waits, breakers)."""

    def _run(config: BrokerConfig, *script):
        breakers = Breakers(redis_client, config)
        waits = Waits()
        client = FakeClient(config, *script)
        result = Attempts(config, breakers, sleep=waits).run(client, config.model(M), {})
        return result, client, waits, breakers

    return _run


def state(breakers: Breakers, scope: str):
    return {s.scope: s for s in breakers.states()}[scope]


def test_success_on_the_first_try(run):
    config = make_config()
    answer = completion()
    result, client, waits, breakers = run(config, answer)
    assert result.completion is answer and result.error is None and result.healthy
    assert client.called == 1 and waits == []
    (call,) = result.calls
    # 1,000 × $0.15 + 500 × $0.60 per 1M tokens
    assert completion_cost(answer, config.model(M)) == 450
    assert (call.model, call.provider, call.outcome, call.error, call.cost_micros) == (
        M,
        P,
        "succeeded",
        None,
        450,
    )
    assert call.latency_ms >= 0
    assert state(breakers, PROVIDER).calls == 0, "a success is reported later by the caller"


def test_a_retryable_error_then_success(run):
    answer = completion()
    result, client, waits, breakers = run(make_config(), retryable(), answer)
    assert result.completion is answer and result.error is None and result.healthy
    assert client.called == 2 and len(waits) == 1
    first, second = result.calls
    assert (first.outcome, first.error, first.cost_micros) == (
        "provider_retryable",
        "sim-openai: HTTP 503",
        0,
    )
    assert (second.outcome, second.cost_micros) == ("succeeded", 450)
    assert state(breakers, PROVIDER).failures == 1, "the failed call reached the breaker at once"
    assert state(breakers, MODEL).failures == 1


def test_every_try_failing_ends_with_the_last_error(run):
    errors = [retryable(), retryable(), retryable()]
    result, client, waits, breakers = run(make_config(tries=3), *errors)
    assert result.completion is None and result.error is errors[-1] and not result.healthy
    assert client.called == 3 and len(waits) == 2
    assert [c.outcome for c in result.calls] == ["provider_retryable"] * 3
    s = state(breakers, PROVIDER)
    assert (s.state, s.calls, s.failures) == ("closed", 3, 3)


def test_one_try_means_no_retry(run):
    error = retryable()
    result, client, waits, _ = run(make_config(tries=1), error)
    assert result.error is error and client.called == 1 and waits == []


def test_waits_grow_exponentially_up_to_the_cap(run, monkeypatch):
    # Full jitter draws between 0 and the bound; take the bound to see it.
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    config = make_config(tries=5, backoff_s=0.01, max_backoff_s=0.05)
    _, _, waits, _ = run(config, *(retryable() for _ in range(5)))
    assert waits == pytest.approx([0.01, 0.02, 0.04, 0.05])


def test_waits_are_jittered_below_the_bound(run):
    config = make_config(tries=4, backoff_s=0.01, max_backoff_s=1.0)
    _, _, waits, _ = run(config, *(retryable() for _ in range(4)))
    assert len(waits) == 3
    for n, wait in enumerate(waits):
        assert 0 <= wait <= 0.01 * 2**n


def test_waits_honour_retry_after_and_grow(run, monkeypatch):
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    config = make_config(tries=4, backoff_s=0.1, max_backoff_s=1.0, max_retry_after_s=1.0)
    # Asked 0.15 s each time: backoff bounds 0.1, 0.2, 0.4 → waits 0.15, 0.2, 0.4.
    _, client, waits, _ = run(config, *(retryable(retry_after=0.15) for _ in range(4)))
    assert client.called == 4
    assert waits == pytest.approx([0.15, 0.2, 0.4])
    assert waits == sorted(waits)


def test_a_retry_after_above_the_backoff_is_slept_in_full(run):
    config = make_config(tries=3, backoff_s=0.001, max_backoff_s=0.002, max_retry_after_s=1.0)
    answer = completion()
    result, client, waits, _ = run(config, retryable(retry_after=0.5), retryable(0.75), answer)
    assert result.completion is answer and client.called == 3
    assert waits == [0.5, 0.75], "never shorter than the provider asked (the jitter is smaller)"


def test_a_retry_after_above_max_retry_after_stops_after_one_call(run):
    config = make_config(tries=3, max_retry_after_s=1.0)
    error = retryable(retry_after=5.0)
    result, client, waits, _ = run(config, error, completion())
    assert client.called == 1 and waits == []
    assert result.error is error and result.retry_after == 5.0 and not result.healthy
    assert [c.outcome for c in result.calls] == ["provider_retryable"]


def test_a_retry_after_equal_to_the_limit_is_still_waited(run):
    config = make_config(tries=2, max_retry_after_s=1.0)
    answer = completion()
    result, _client, waits, _ = run(config, retryable(retry_after=1.0), answer)
    assert result.completion is answer and waits == [1.0]


def test_a_429_is_not_retried_and_is_not_a_breaker_failure(run):
    error = ProviderRateLimited("slow down", provider=P, status=429, retry_after=0.01)
    result, client, waits, breakers = run(make_config(), error, completion())
    assert client.called == 1 and waits == []
    assert result.error is error and result.retry_after == 0.01 and not result.healthy
    assert [c.outcome for c in result.calls] == ["rate_limited"]
    assert state(breakers, PROVIDER).calls == 0


@pytest.mark.parametrize(
    "error",
    [
        MalformedResponse("not JSON", provider=P, status=200),
        ProviderRejected("bad temperature", provider=P, status=400),
        ContextWindowExceeded("too long", provider=P, status=400),
        ProviderUnavailable("bad key", provider=P, status=401),
    ],
    ids=lambda e: e.code,
)
def test_other_errors_are_not_retried(run, error):
    result, client, waits, _ = run(make_config(), error, completion())
    assert client.called == 1 and waits == [] and result.error is error
    assert [c.outcome for c in result.calls] == [error.code]


def test_unavailable_opens_the_provider_breaker_at_once(run, redis_client):
    config = make_config()
    error = ProviderUnavailable("insufficient_quota", provider=P, status=429)
    result, _, _, breakers = run(config, error)
    assert result.error is error and not result.healthy
    assert state(breakers, PROVIDER).state == "open"
    assert state(breakers, MODEL).state == "closed", "only a failure for the model"
    assert breakers.admit(P, M) == PROVIDER
    assert breakers.admit(P, "gpt-4o") == PROVIDER, "every model of the provider"
    assert breakers.admit("sim-anthropic", "claude-haiku-4-5") is None

    # The next attempt on this provider makes no call.
    again, client, _waits, _ = run(config, completion())
    assert isinstance(again.error, CircuitOpen) and again.calls == () and client.called == 0


def test_an_open_breaker_means_no_call(run, redis_client):
    config = make_config()
    Breakers(redis_client, config).record(P, M, "unavailable")
    result, client, waits, _ = run(config, completion())
    assert client.called == 0 and waits == []
    assert isinstance(result.error, CircuitOpen) and result.error.code == "circuit_open"
    assert str(result.error) == "sim-openai: circuit breaker provider:sim-openai is open"
    assert result.calls == () and result.completion is None and not result.healthy


def test_an_open_model_breaker_refuses_only_that_model(run, redis_client):
    config = make_config(breakers={"min_calls": 4, "failure_rate": 0.6})
    b = Breakers(redis_client, config)
    for _ in range(4):
        b.record(P, "gpt-4o", "success")
    for _ in range(4):
        b.record(P, M, "failure")  # the model 4 of 4, the provider 4 of 8
    result, client, _, _ = run(config, completion())
    assert client.called == 0 and isinstance(result.error, CircuitOpen)
    assert "model:gpt-4o-mini" in str(result.error)


def test_the_breaker_opening_during_the_retries_ends_the_attempt(run):
    config = make_config(tries=5, breakers={"consecutive_failures": 2})
    result, client, _waits, breakers = run(config, *(retryable() for _ in range(5)))
    assert client.called == 2, "the third try finds the breaker open"
    assert isinstance(result.error, CircuitOpen) and not result.healthy
    assert [c.outcome for c in result.calls] == ["provider_retryable"] * 2
    assert state(breakers, PROVIDER).state == "open"


def test_a_bug_in_the_client_is_an_error_result_not_an_exception(run):
    bug = KeyError("choices")
    result, client, waits, breakers = run(make_config(), bug, completion())
    assert result.error is bug and result.completion is None and not result.healthy
    assert client.called == 1 and waits == [], "a bug is not retried"
    (call,) = result.calls
    assert (call.outcome, call.error) == ("internal_error", "'choices'")
    assert state(breakers, PROVIDER).failures == 1


@pytest.mark.parametrize(
    ("script", "healthy"),
    [
        ([completion()], True),
        ([ProviderRejected("bad", provider=P, status=400)], True),
        ([ContextWindowExceeded("too long", provider=P, status=400)], True),
        ([retryable(), retryable(), retryable()], False),
        ([MalformedResponse("not JSON", provider=P, status=200)], False),
        ([ProviderUnavailable("bad key", provider=P, status=401)], False),
        ([ProviderRateLimited("slow", provider=P, status=429)], False),
        ([ValueError("bug")], False),
    ],
    ids=[
        "success",
        "rejected",
        "context_window",
        "retryable",
        "malformed",
        "unavailable",
        "rate_limited",
        "bug",
    ],
)
def test_healthy_says_whether_the_provider_answered_sensibly(run, script, healthy):
    result, _, _, breakers = run(make_config(), *script)
    assert result.healthy is healthy
    if healthy and result.error is not None:
        assert state(breakers, PROVIDER).failures == 0, "the request's fault, not the provider's"


def test_healthy_is_false_when_the_breaker_is_open(run, redis_client):
    config = make_config()
    Breakers(redis_client, config).record(P, M, "unavailable")
    result, _, _, _ = run(config, completion())
    assert isinstance(result.error, CircuitOpen) and result.healthy is False


def test_a_half_open_breaker_lets_the_call_through_and_its_success_closes_it(run, redis_client):
    config = make_config(breakers={"min_calls": 1, "open_s": 0.2, "probes": 1})
    breakers = Breakers(redis_client, config)
    breakers.record(P, M, "failure")
    time.sleep(0.3)
    assert breakers.allowances()[f"provider:{P}"] == 1, "half-open"
    first, client, _, _ = run(config, completion())
    assert client.called == 1 and first.completion is not None, "the probe goes"
    breakers.record(P, M, "success")  # what the worker's feedback pipeline records
    assert breakers.allowances()[f"provider:{P}"] is None, "closed again"
