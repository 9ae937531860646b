"""Shared pieces: retry-after parsing, costing, the registry and the public surface."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from broker.errors import ConfigError
from workers import providers
from workers.providers import ADAPTERS, Completion, HttpCall, adapter_for, completion_cost
from workers.providers.base import parse_retry_after


def test_public_surface_is_pinned() -> None:
    assert sorted(providers.__all__) == [
        "ADAPTERS",
        "Completion",
        "HttpCall",
        "ProviderClient",
        "WireAdapter",
        "adapter_for",
        "cache_savings",
        "completion_cost",
    ]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": " 1.5 "}, 1.5),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # ms wins
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),  # garbage ms falls back
        ({"Retry-After": "3"}, 3.0),  # case-insensitive
        ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # a past date means now
        ({"retry-after": "soon"}, None),
        ({"retry-after": "-5"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": ""}, None),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected
    assert parse_retry_after(httpx.Headers(headers)) == expected


def test_parse_retry_after_future_http_date() -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    value = parse_retry_after({"retry-after": format_datetime(when, usegmt=True)})
    assert value is not None and 115 <= value <= 120


def test_completion_cost_known_numbers(mini) -> None:
    million = Completion("x", "stop", 1_000_000, 0, 1_000_000, None, "gpt-4o-mini")
    assert completion_cost(million, mini) == 150_000 + 600_000
    cached = Completion("x", "stop", 0, 1_000_000, 0, None, "gpt-4o-mini")
    assert completion_cost(cached, mini) == 75_000
    small = Completion("x", "stop", 12, 0, 30, None, "gpt-4o-mini")
    assert completion_cost(small, mini) == 20  # 1.8 + 18 = 19.8, rounded half up once


def test_registry_by_wire_format() -> None:
    assert set(ADAPTERS) == {"openai", "anthropic"}
    for wire, adapter in ADAPTERS.items():
        assert adapter_for(wire) is adapter
        assert adapter.name == wire
    with pytest.raises(ConfigError, match="unknown wire format 'gemini'"):
        adapter_for("gemini")
    with pytest.raises(TypeError):
        ADAPTERS["x"] = ADAPTERS["openai"]  # type: ignore[index]


def test_http_call_repr_hides_credentials() -> None:
    call = HttpCall("/v1/x", {"Authorization": "Bearer sk-secret", "x-api-key": "sk-secret"}, {})
    assert "sk-secret" not in repr(call)


def test_cache_savings_are_the_cached_tokens_at_the_price_difference() -> None:
    from broker.config.broker_toml import load_config
    from workers.providers import Completion, cache_savings

    model = load_config().model("gpt-4o")  # $2.50 input, $1.25 cached input per 1M
    done = Completion("x", "stop", 1_000, 400_000, 10, None, "gpt-4o")
    assert cache_savings(done, model) == 500_000  # 400k × $1.25 / 1M = $0.50
