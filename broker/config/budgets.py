"""``[[budgets]]`` in broker.toml: spend limits per team or feature, over UTC windows.

A budget covers a team (and optionally one of its features) over a window: ``daily`` (UTC
midnight to midnight), ``monthly`` (from the 1st, UTC) or ``custom`` (``period_hours`` long,
repeating from ``start``). Limits are USD in the file and integer micro-dollars everywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from broker.money import usd_to_micros

BudgetPolicy = Literal["reject", "hold", "downgrade"]


@dataclass(frozen=True, slots=True)
class Window:
    id: str  # part of the Redis key: d20261122, m202611, c<start epoch>
    start: datetime
    end: datetime


class BudgetConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    team: str
    feature: str | None = None
    window: Literal["daily", "monthly", "custom"] = "daily"
    limit_usd: Decimal = Field(gt=0)
    start: datetime | None = Field(default=None, description="custom: when the first window opens")
    period_hours: float | None = Field(default=None, gt=0, description="custom: window length")

    @model_validator(mode="after")
    def _custom_needs_start_and_period(self) -> BudgetConfig:
        custom = self.window == "custom"
        if custom != (self.start is not None and self.period_hours is not None):
            raise ValueError("start and period_hours go together with window = 'custom'")
        if self.start is not None and self.start.tzinfo is None:
            raise ValueError("start needs a timezone, e.g. 2026-11-01T00:00:00Z")
        return self

    @property
    def id(self) -> str:
        """``team[/feature]/window``: how operators and the API name this budget."""
        scope = self.team if self.feature is None else f"{self.team}/{self.feature}"
        return f"{scope}/{self.window}"

    @property
    def limit_micros(self) -> int:
        return usd_to_micros(self.limit_usd)

    def covers(self, team: str, feature: str) -> bool:
        return self.team == team and self.feature in (None, feature)

    def window_at(self, now: datetime) -> Window:
        now = now.astimezone(UTC)
        if self.window == "daily":
            start = now.replace(hour=0, minute=0, second=0, microsecond=0)
            return Window(f"d{start:%Y%m%d}", start, start + timedelta(days=1))
        if self.window == "monthly":
            start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            end = (start + timedelta(days=32)).replace(day=1)
            return Window(f"m{start:%Y%m}", start, end)
        assert self.start is not None and self.period_hours is not None
        period = timedelta(hours=self.period_hours)
        n = max(0, (now - self.start) // period)
        start = self.start.astimezone(UTC) + n * period
        return Window(f"c{int(start.timestamp())}", start, start + period)
