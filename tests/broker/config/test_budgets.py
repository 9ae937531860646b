"""Budget windows in UTC: daily, monthly (December rolls into January) and custom periods."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from broker.config.budgets import BudgetConfig


def test_daily_and_monthly_windows_are_utc():
    late_in_tokyo = datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=9)))
    daily = BudgetConfig(team="t", limit_usd=1).window_at(late_in_tokyo)
    assert (daily.id, daily.start, daily.end) == (
        "d20261231",
        datetime(2026, 12, 31, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    monthly = BudgetConfig(team="t", window="monthly", limit_usd=1).window_at(late_in_tokyo)
    assert (monthly.id, monthly.end) == ("m202612", datetime(2027, 1, 1, tzinfo=UTC))


def test_a_custom_window_repeats_from_its_start():
    start = datetime(2026, 11, 1, 6, tzinfo=UTC)
    budget = BudgetConfig(team="t", window="custom", limit_usd=1, start=start, period_hours=6)
    window = budget.window_at(datetime(2026, 11, 22, 13, 5, tzinfo=UTC))
    assert (window.start, window.end) == (
        datetime(2026, 11, 22, 12, tzinfo=UTC),
        datetime(2026, 11, 22, 18, tzinfo=UTC),
    )
    assert budget.id == "t/custom" and budget.limit_micros == 1_000_000
    assert BudgetConfig(team="t", feature="search", limit_usd="0.5").id == "t/search/daily"
