"""Money: integer micro-dollars, exact Decimal arithmetic, one half-up rounding per attempt."""

from __future__ import annotations

from decimal import Decimal

import pytest

from broker.money import MICROS_PER_USD, cost_micros, format_usd, usd_to_micros

D = Decimal


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([], 0),
        ([(0, D("15.00"))], 0),
        ([(1, D("0.075"))], 0),  # 0.075 rounds down
        ([(7, D("0.075"))], 1),  # 0.525 rounds up
        ([(2, D("0.25"))], 1),  # 0.5: half up, not half to even (which would give 0)
        ([(10, D("0.25"))], 3),  # 2.5: half up (half to even would give 2)
        ([(6, D("0.25"))], 2),  # 1.5
        ([(3, D("0.1"))], 0),  # exactly 0.3, no float noise
        ([(1_000_000, D("0.15"))], 150_000),  # 1M tokens at the list price is the price in micros
        ([(40, D("0.025"))], 1),  # exactly 1.000
        ([(20, D("0.025"))], 1),  # exactly 0.5
        ([(19, D("0.025"))], 0),  # 0.475
    ],
)
def test_cost_micros_rounds_half_up(pairs, expected):
    assert cost_micros(pairs) == expected


def test_rounding_happens_once_per_attempt_not_per_price():
    # 0.4 + 0.4 = 0.8 → 1; rounding each part first would give 0.
    assert cost_micros([(1, D("0.40")), (1, D("0.40"))]) == 1
    # gpt-4o-mini: 12 uncached input, 7 cached, 30 output → 1.8 + 0.525 + 18 = 20.325 → 20
    assert cost_micros([(12, D("0.15")), (7, D("0.075")), (30, D("0.60"))]) == 20
    # 2.5 + 0.5 (half-up once) = 3, where rounding each (3 + 1) would overcharge by one
    assert cost_micros([(10, D("0.25")), (2, D("0.25"))]) == 3


def test_cost_micros_is_exact_for_large_numbers():
    # a trillion tokens at $15/1M is $15M exactly
    assert cost_micros([(10**12, D("15.00"))]) == 15 * 10**12
    # 123,456,789 × 0.075 = 9,259,259.175 → 9,259,259
    assert cost_micros([(123_456_789, D("0.075"))]) == 9_259_259
    # 10**15 + 0.5: beyond float precision, still rounded correctly
    assert cost_micros([(10**15, D("1")), (2, D("0.25"))]) == 10**15 + 1
    # a sum whose float would drift: a thousand single tokens at 0.1
    assert cost_micros([(1, D("0.1"))] * 1_000) == 100
    assert isinstance(cost_micros([(3, D("0.5"))]), int)


@pytest.mark.parametrize(
    ("usd", "micros"),
    [
        ("0.15", 150_000),
        (D("2.50"), 2_500_000),
        ("0", 0),
        (0.1, 100_000),  # a float is read through its shortest repr, not its binary value
        (1e-06, 1),
        ("0.0000005", 1),  # half a micro-dollar rounds up
        ("0.0000004999", 0),
        ("1234567.891234", 1_234_567_891_234),
        ("1000000000", 10**9 * MICROS_PER_USD),
    ],
)
def test_usd_to_micros(usd, micros):
    assert usd_to_micros(usd) == micros


@pytest.mark.parametrize(
    ("micros", "kwargs", "text"),
    [
        (1_234_567, {}, "$1.2346"),
        (0, {}, "$0.0000"),
        (1, {}, "$0.0000"),
        (100, {}, "$0.0001"),
        (150_000, {}, "$0.1500"),
        (1_234_567_890_000, {}, "$1,234,567.8900"),
        (1_234_567, {"places": 2}, "$1.23"),
        (1_234_567, {"places": 6}, "$1.234567"),
        (999_999_999, {"places": 0}, "$1,000"),
    ],
)
def test_format_usd(micros, kwargs, text):
    assert format_usd(micros, **kwargs) == text


def test_micros_round_trip_through_usd():
    for micros in (0, 1, 999_999, 1_000_000, 123_456_789_012):
        assert usd_to_micros(format_usd(micros, places=6).lstrip("$").replace(",", "")) == micros
