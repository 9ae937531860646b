"""What becomes of a request after a failed attempt: every error class at every chain position.

The default catalog: gpt-4o-mini's chain is gpt-4o-mini (128k) → claude-haiku-4-5 (200k) →
gpt-4.1-nano (1M); ``max_attempts`` is 5.
"""

from __future__ import annotations

import pytest

from broker.config.broker_toml import BrokerConfig, SchedulerConfig, load_config, parse_config
from broker.errors import (
    CircuitOpen,
    ContextWindowExceeded,
    MalformedResponse,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRetryable,
    ProviderUnavailable,
)
from broker.store.transitions import HandBack
from workers.fallback import Fail, after_error

MINI, HAIKU, NANO = "gpt-4o-mini", "claude-haiku-4-5", "gpt-4.1-nano"
CHAIN = [MINI, HAIKU, NANO]

CONFIG = load_config()


def rate_limited() -> ProviderRateLimited:
    return ProviderRateLimited("slow down", provider="x", status=429, retry_after=2.0)


def circuit_open() -> CircuitOpen:
    return CircuitOpen("circuit breaker provider:x is open", provider="x")


def retryable() -> ProviderRetryable:
    return ProviderRetryable("HTTP 503", provider="x", status=503)


def malformed() -> MalformedResponse:
    return MalformedResponse("not JSON", provider="x", status=200)


def unavailable() -> ProviderUnavailable:
    return ProviderUnavailable("insufficient_quota", provider="x", status=429)


def too_long() -> ContextWindowExceeded:
    return ContextWindowExceeded("prompt too long", provider="x", status=400)


def rejected() -> ProviderRejected:
    return ProviderRejected("bad temperature", provider="x", status=400)


def test_the_default_chain_is_what_these_tests_assume():
    assert CONFIG.model(MINI).chain == CHAIN
    assert [CONFIG.model(m).context_window for m in CHAIN] == [128_000, 200_000, 1_047_576]
    assert CONFIG.scheduler.max_attempts == 5


# (error, where it failed in the chain) → the decision, with one earlier failure (not the last).
CASES = [
    # 429: the same position, never a failure, whatever the position.
    (rate_limited, 0, HandBack(0, failed=False)),
    (rate_limited, 1, HandBack(1, failed=False)),
    (rate_limited, 2, HandBack(2, failed=False)),
    # Breaker open: the next model, not a failure; at the end, the same model.
    (circuit_open, 0, HandBack(1, failed=False)),
    (circuit_open, 1, HandBack(2, failed=False)),
    (circuit_open, 2, HandBack(2, failed=False)),
    # Retryable after every try: next model, counted; at the end the same model again.
    (retryable, 0, HandBack(1, failed=True)),
    (retryable, 1, HandBack(2, failed=True)),
    (retryable, 2, HandBack(2, failed=True)),
    # Malformed: like retryable.
    (malformed, 0, HandBack(1, failed=True)),
    (malformed, 1, HandBack(2, failed=True)),
    (malformed, 2, HandBack(2, failed=True)),
    # Unavailable: next model, counted; at the end, failed.
    (unavailable, 0, HandBack(1, failed=True)),
    (unavailable, 1, HandBack(2, failed=True)),
    (unavailable, 2, Fail("provider_unavailable", "x: insufficient_quota")),
    # Context window: the next model with a larger window; none left, failed.
    (too_long, 0, HandBack(1, failed=True)),
    (too_long, 1, HandBack(2, failed=True)),
    (too_long, 2, Fail("context_window_exceeded", "x: prompt too long")),
    # The request itself is wrong: failed at once, anywhere.
    (rejected, 0, Fail("provider_rejected", "x: bad temperature")),
    (rejected, 1, Fail("provider_rejected", "x: bad temperature")),
    (rejected, 2, Fail("provider_rejected", "x: bad temperature")),
]


@pytest.mark.parametrize(
    ("make_error", "position", "expected"),
    CASES,
    ids=[f"{make.__name__}@{pos}" for make, pos, _ in CASES],
)
def test_each_error_at_each_chain_position(make_error, position, expected):
    assert after_error(CONFIG, MINI, CHAIN[position], make_error(), failures=1) == expected


# --- max_attempts -------------------------------------------------------------------------------


@pytest.mark.parametrize("make_error", [retryable, malformed, unavailable, too_long])
@pytest.mark.parametrize("position", [0, 1])
def test_the_last_allowed_failure_fails_the_request(make_error, position):
    """failures + 1 >= max_attempts (5): the fifth failed dispatch ends it, wherever it is."""
    error = make_error()
    assert isinstance(after_error(CONFIG, MINI, CHAIN[position], error, failures=3), HandBack)
    decision = after_error(CONFIG, MINI, CHAIN[position], error, failures=4)
    assert decision == Fail(error.code, f"{error} (5 failed attempts, giving up)")


def test_retryable_at_the_end_of_the_chain_loops_until_max_attempts():
    assert after_error(CONFIG, MINI, NANO, retryable(), failures=3) == HandBack(2, failed=True)
    assert after_error(CONFIG, MINI, NANO, retryable(), failures=4) == Fail(
        "provider_retryable", "x: HTTP 503 (5 failed attempts, giving up)"
    )


@pytest.mark.parametrize(
    ("make_error", "position", "expected"),
    [
        (rate_limited, 0, HandBack(0, failed=False)),
        (rate_limited, 2, HandBack(2, failed=False)),
        (circuit_open, 0, HandBack(1, failed=False)),
        (circuit_open, 2, HandBack(2, failed=False)),
    ],
)
def test_rate_limits_and_open_breakers_never_count_against_max_attempts(
    make_error, position, expected
):
    assert after_error(CONFIG, MINI, CHAIN[position], make_error(), failures=4) == expected
    assert after_error(CONFIG, MINI, CHAIN[position], make_error(), failures=40) == expected


def test_max_attempts_one_fails_the_first_failure():
    config = CONFIG.model_copy(update={"scheduler": SchedulerConfig(max_attempts=1)})
    assert config.model(MINI).chain == CHAIN, "model_copy keeps the catalog lookups"
    assert after_error(config, MINI, MINI, retryable(), failures=0) == Fail(
        "provider_retryable", "x: HTTP 503 (1 failed attempts, giving up)"
    )
    assert after_error(config, MINI, MINI, rate_limited(), failures=0) == HandBack(0, False)
    assert after_error(config, MINI, MINI, circuit_open(), failures=0) == HandBack(1, False)


# --- odd inputs ---------------------------------------------------------------------------------


def test_a_model_without_fallbacks_retries_itself_and_fails_when_unavailable():
    assert CONFIG.model("gpt-4o").chain == ["gpt-4o"]
    assert after_error(CONFIG, "gpt-4o", "gpt-4o", retryable(), 0) == HandBack(0, failed=True)
    assert after_error(CONFIG, "gpt-4o", "gpt-4o", circuit_open(), 0) == HandBack(0, failed=False)
    assert after_error(CONFIG, "gpt-4o", "gpt-4o", unavailable(), 0) == Fail(
        "provider_unavailable", "x: insufficient_quota"
    )
    assert after_error(CONFIG, "gpt-4o", "gpt-4o", too_long(), 0) == Fail(
        "context_window_exceeded", "x: prompt too long"
    )


@pytest.mark.parametrize(
    ("make_error", "expected"),
    [
        (rate_limited, HandBack(0, failed=False)),
        (circuit_open, HandBack(1, failed=False)),
        (retryable, HandBack(1, failed=True)),
        (unavailable, HandBack(1, failed=True)),
        # gpt-4o's window (128k) is not smaller than haiku's: the first larger one is haiku.
        (too_long, HandBack(1, failed=True)),
        (rejected, Fail("provider_rejected", "x: bad temperature")),
    ],
)
def test_a_tried_model_not_in_the_chain_counts_as_the_head(make_error, expected):
    """The worker ran a model outside the request's chain (the catalog changed between dispatch
    and the answer): it is treated as the chain's first position."""
    assert "gpt-4o" not in CHAIN
    assert after_error(CONFIG, MINI, "gpt-4o", make_error(), failures=0) == expected


@pytest.mark.parametrize(
    "make_error", [rate_limited, circuit_open, retryable, malformed, unavailable, too_long]
)
def test_a_requested_model_gone_from_the_catalog_fails_as_unknown_model(make_error):
    """As the scheduler would say for it, whatever the last error was (a 429 included: rate
    limiting itself never fails a request)."""
    error = make_error()
    decision = after_error(CONFIG, "gpt-9", MINI, error, failures=0)
    assert decision.code == "unknown_model"
    assert "'gpt-9' is no longer in the catalog" in decision.message
    assert str(error) in decision.message


def test_a_rejection_on_the_last_attempt_keeps_the_providers_message_alone():
    error = ProviderRejected("bad temperature", provider="x", status=400)
    assert after_error(CONFIG, MINI, MINI, error, failures=4) == Fail(
        "provider_rejected", "x: bad temperature"
    )


@pytest.mark.parametrize("position", [0, 2])
@pytest.mark.parametrize("failures", [0, 4])
def test_a_bug_is_an_internal_error(position, failures):
    decision = after_error(CONFIG, MINI, CHAIN[position], ValueError("oops"), failures)
    assert decision == Fail("internal_error", "internal error: ValueError")
    assert "oops" not in decision.message, "a bug's message is not shown to the user"


# --- context windows ----------------------------------------------------------------------------


def with_fallbacks(config: BrokerConfig, **fallbacks: list[str]) -> BrokerConfig:
    """``config`` with these models' fallbacks replaced (keyword: model name, - for _)."""
    data = config.model_dump(mode="json")
    wanted = {name.replace("_", "-"): chain for name, chain in fallbacks.items()}
    for model in data["models"]:
        if model["name"] in wanted:
            model["fallbacks"] = wanted[model["name"]]
    return parse_config(data)


def test_context_window_skips_models_whose_window_is_not_larger():
    # gpt-4o (128k) → gpt-4o-mini (128k, not larger) → claude-haiku-4-5 (200k) → gpt-4.1 (1M)
    config = with_fallbacks(CONFIG, gpt_4o=[MINI, HAIKU, "gpt-4.1"])
    chain = config.model("gpt-4o").chain
    assert [config.model(m).context_window for m in chain] == [128_000, 128_000, 200_000, 1_047_576]
    assert after_error(config, "gpt-4o", "gpt-4o", too_long(), 0) == HandBack(2, failed=True)
    assert after_error(config, "gpt-4o", MINI, too_long(), 0) == HandBack(2, failed=True)
    assert after_error(config, "gpt-4o", HAIKU, too_long(), 0) == HandBack(3, failed=True)
    # A retryable error takes the very next model, whatever its window.
    assert after_error(config, "gpt-4o", "gpt-4o", retryable(), 0) == HandBack(1, failed=True)


def test_context_window_fails_when_no_later_model_is_larger():
    # gpt-4.1 (1M) → claude-haiku-4-5 (200k) → gpt-4o-mini (128k): nothing larger.
    config = with_fallbacks(CONFIG, gpt_4_1=[HAIKU, MINI])
    assert after_error(config, "gpt-4.1", "gpt-4.1", too_long(), 0) == Fail(
        "context_window_exceeded", "x: prompt too long"
    )
    # A larger model earlier in the chain is not gone back to.
    assert after_error(config, "gpt-4.1", HAIKU, too_long(), 0) == Fail(
        "context_window_exceeded", "x: prompt too long"
    )
