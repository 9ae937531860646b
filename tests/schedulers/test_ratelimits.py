"""Shared RPM/TPM buckets on a real Redis: sizing, refill, refunds, 429 back-off, headers."""

from __future__ import annotations

import math
import time

import httpx
import pytest

from broker.config.broker_toml import load_config
from schedulers.capacity import InFlight, Room
from schedulers.ratelimits import JITTER_S, Bucket, RateLimits
from workers.providers.base import RateSignal


@pytest.fixture
def config():
    base = load_config()
    providers = [
        p.model_copy(update={"rpm": 600, "tpm": 60_000, "burst_s": 2.0, "concurrency": 1000})
        if p.name == "sim-openai"
        else p
        for p in base.providers
    ]
    return base.with_providers(providers)


@pytest.mark.parametrize("limit", [1, 60, 3_000, 10_000_000])
@pytest.mark.parametrize("burst_s", [0.5, 2.0, 30.0])
def test_no_span_of_dispatches_a_provider_counts_as_a_minute_exceeds_the_limit(limit, burst_s):
    bucket = Bucket.per_minute("provider:x", "rpm", limit, burst_s)
    # At most capacity at once plus the refill over a minute and the arrival jitter, in whole
    # requests.
    worst_minute = bucket.capacity + bucket.rate * (60 + JITTER_S)
    assert math.floor(worst_minute + 1e-9) <= limit
    assert bucket.capacity >= 1.0 and bucket.rate > 0


def drain(room: Room, tokens: int = 10) -> int:
    n = 0
    while room.fits("sim-openai", "gpt-4o-mini", tokens):
        room.take("sim-openai", "gpt-4o-mini", tokens)
        n += 1
    return n


def commit(redis_client, limits: RateLimits, room: Room) -> None:
    with redis_client.pipeline() as pipe:
        limits.take(pipe, room.taken)
        pipe.execute()


def test_a_bucket_lets_its_burst_go_then_refills_at_its_rate(redis_client, config):
    limits = RateLimits(redis_client, config)
    in_flight = InFlight(redis_client, config, margin=0)
    room = Room(in_flight, limits)
    rpm = limits.buckets("sim-openai", "gpt-4o-mini")[0]
    assert drain(room) == int(rpm.capacity)  # 600 rpm, 2 s burst: 19 at once
    commit(redis_client, limits, room)
    assert drain(Room(in_flight, limits)) == 0, "shared through Redis, not per process"
    time.sleep(0.5)
    refilled = drain(Room(in_flight, limits))
    assert 3 <= refilled <= 6  # 600 / 63 s ≈ 9.5 per second


def test_tokens_are_taken_by_estimate_and_the_unused_part_refunded(redis_client, config):
    limits = RateLimits(redis_client, config)
    in_flight = InFlight(redis_client, config, margin=0)
    room = Room(in_flight, limits)
    tpm = limits.buckets("sim-openai", "gpt-4o-mini")[1]
    assert tpm.tokens and drain(room, tokens=1_000) == 1  # 60k tpm, 2 s: 1,904 tokens
    commit(redis_client, limits, room)
    assert not Room(in_flight, limits).fits("sim-openai", "gpt-4o-mini", 1_000)
    with redis_client.pipeline() as pipe:
        limits.refund_tokens(pipe, "sim-openai", "gpt-4o-mini", 900)  # used only 100
        pipe.execute()
    assert Room(in_flight, limits).fits("sim-openai", "gpt-4o-mini", 1_000)


def test_a_429_blocks_the_provider_for_its_retry_after(redis_client, config):
    limits = RateLimits(redis_client, config)
    in_flight = InFlight(redis_client, config, margin=0)
    with redis_client.pipeline() as pipe:
        limits.back_off(pipe, "sim-openai", "gpt-4o-mini", retry_after_s=0.3)
        pipe.execute()
    room = Room(in_flight, limits)
    assert not room.fits("sim-openai", "gpt-4o-mini", 10)
    assert room.fits("sim-anthropic", "claude-haiku-4-5", 10), "other providers are untouched"
    time.sleep(0.45)
    assert Room(in_flight, limits).fits("sim-openai", "gpt-4o-mini", 10)


def test_a_shorter_retry_after_does_not_cut_a_longer_one_short(redis_client, config):
    limits = RateLimits(redis_client, config)
    with redis_client.pipeline() as pipe:
        limits.back_off(pipe, "sim-openai", "gpt-4o-mini", retry_after_s=1.0)
        limits.back_off(pipe, "sim-openai", "gpt-4o-mini", retry_after_s=0.05)
        pipe.execute()
    time.sleep(0.2)
    assert "provider:sim-openai" in limits.state()[1]


def test_remaining_headers_clamp_the_bucket(redis_client, config):
    limits = RateLimits(redis_client, config)
    in_flight = InFlight(redis_client, config, margin=0)
    signal = RateSignal.from_headers(
        httpx.Headers({"x-ratelimit-remaining-requests": "2", "x-ratelimit-remaining-tokens": "x"})
    )
    assert signal == RateSignal(remaining_requests=2, remaining_tokens=None)
    with redis_client.pipeline() as pipe:
        limits.observe(pipe, "sim-openai", "gpt-4o-mini", signal)
        pipe.execute()
    assert drain(Room(in_flight, limits)) == 2


def test_anthropic_headers_are_read_too():
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-requests-remaining": "7",
            "anthropic-ratelimit-tokens-remaining": "900",
        }
    )
    assert RateSignal.from_headers(headers) == RateSignal(7, 900)
    assert RateSignal.from_headers(httpx.Headers({})) is None


def test_per_model_limits_apply_beside_the_providers(redis_client):
    base = load_config()
    models = [m.model_copy(update={"rpm": 60}) if m.name == "gpt-4o" else m for m in base.models]
    config = base.model_validate({**base.model_dump(), "models": models})
    limits = RateLimits(redis_client, config)
    room = Room(InFlight(redis_client, config, margin=0), limits)
    n = 0
    while room.fits("sim-openai", "gpt-4o", 10):
        room.take("sim-openai", "gpt-4o", 10)
        n += 1
    assert n == 1  # 60 rpm, 2 s burst: capacity 1.9 → one at once
    assert room.fits("sim-openai", "gpt-4o-mini", 10), "the provider itself is unlimited"


def test_a_teams_runaway_guard_limits_its_dispatches_not_others(redis_client):
    base = load_config()
    teams = [t.model_copy(update={"rpm": 60}) if t.id == "product" else t for t in base.teams]
    config = base.model_validate({**base.model_dump(), "teams": teams})
    limits = RateLimits(redis_client, config)
    room = Room(InFlight(redis_client, config, margin=0), limits)
    n = 0
    while room.fits("sim-openai", "gpt-4o-mini", 10, "product", "search"):
        room.take("sim-openai", "gpt-4o-mini", 10, "product", "search")
        n += 1
    assert n == 1  # 60 a minute, 2 s at once: one
    assert room.fits("sim-openai", "gpt-4o-mini", 10, "content", "search")
