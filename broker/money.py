"""Money is integer micro-dollars (1 USD = 1,000,000). Prices are USD per 1M tokens.

A price in USD per million tokens is exactly micro-dollars per token, so a cost is
``tokens × price`` rounded once, half up, per charged attempt.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MICROS_PER_USD = 1_000_000


def cost_micros(tokens_and_prices: list[tuple[int, Decimal]]) -> int:
    """Cost of an attempt from ``(tokens, USD per 1M tokens)`` pairs, in micro-dollars."""
    total = sum((Decimal(tokens) * price for tokens, price in tokens_and_prices), Decimal(0))
    return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def usd_to_micros(usd: Decimal | str | float) -> int:
    return int((Decimal(str(usd)) * MICROS_PER_USD).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def format_usd(micros: int, places: int = 4) -> str:
    """``1234567`` → ``"$1.2346"``; the one way money is shown to people."""
    value = Decimal(micros) / MICROS_PER_USD
    return f"${value:,.{places}f}"
