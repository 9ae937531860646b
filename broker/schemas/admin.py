"""The operators' side of the HTTP API (``/v1/admin/...``): teams' weights, fairness state and
pauses, budgets and their limits, alerts, and the circuit breakers.

Apart from the job and result models (:mod:`.http`) because only operators (admin key, the
``inference-broker`` admin commands) read and write these. :mod:`.http` re-exports every name
here.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from broker.schemas.fields import NulFree, _Model


class WeightIn(_Model):
    """``PUT /v1/admin/teams/{team}/weight``: the team's fair-share weight from now on."""

    weight: float = Field(ge=0.001, le=1000, allow_inf_nan=False)


class Backlog(BaseModel):
    high: int
    medium: int
    low: int


class TeamStatusOut(BaseModel):
    """One team's fairness state, as ``GET /v1/admin/teams`` shows it."""

    team: str
    weight: float = Field(description="The weight the scheduler uses now.")
    weight_source: Literal["config", "override", "default"] = Field(
        description="config: broker.toml; override: set through the admin API; "
        "default: not in broker.toml any more, drains at weight 1."
    )
    counter: float = Field(description="Virtual token counter: weighted service / weight.")
    backlog: Backlog = Field(description="Queued requests per priority.")
    parked: int = Field(
        default=0,
        description="Queued requests set aside because every model of their chain is behind "
        "an open circuit breaker; they go back to the queue when one lets calls through.",
    )
    queued: int = Field(description="Requests waiting in all: the backlog and the parked.")
    service: float = Field(description="Weighted service received (tokens or micro-dollars).")
    share: float = Field(description="This team's fraction of all service received, 0..1.")
    paused: bool = Field(default=False, description="Its queues are not served until resumed.")
    paused_reason: str | None = Field(default=None, description="Why, while paused.")


class TeamList(BaseModel):
    teams: list[TeamStatusOut]


class PauseIn(_Model):
    """``POST /v1/admin/teams/{team}/pause``: why (shown in the team list and the alert)."""

    reason: NulFree = Field(default="paused by an operator", min_length=1, max_length=500)


class TeamPauseOut(BaseModel):
    """A team's pause state after ``pause`` or ``resume``."""

    team: str
    paused: bool
    reason: str | None = Field(description="Why the team is paused; None when it is not.")
    changed: bool = Field(description="False when it was already in that state.")


class BudgetLimitIn(_Model):
    """``PUT /v1/admin/budgets/{id}/limit``: the budget's limit from now on, in USD."""

    limit_usd: Decimal = Field(
        gt=0,
        le=1_000_000,
        decimal_places=6,
        allow_inf_nan=False,
        description='A decimal string ("12.50") or a number; at most 6 decimal places.',
    )


class BudgetOut(BaseModel):
    """One ``[[budgets]]`` entry in its current window, as ``GET /v1/admin/budgets`` shows it."""

    id: str = Field(description="team[/feature]/window, e.g. product/search/monthly.")
    team: str
    feature: str | None
    window: Literal["daily", "monthly", "custom"]
    window_start: datetime = Field(description="UTC, inclusive.")
    window_end: datetime = Field(description="UTC, exclusive: the limit renews then.")
    limit_micros: int = Field(description="The limit the scheduler enforces now.")
    limit_source: Literal["config", "override"] = Field(
        description="config: broker.toml; override: set through the admin API."
    )
    spent_micros: int
    reserved_micros: int = Field(description="Held for requests dispatched but not yet settled.")
    remaining_micros: int = Field(description="limit − spent − reserved, at least 0.")
    limit_usd: str
    spent_usd: str
    reserved_usd: str
    remaining_usd: str


class BudgetList(BaseModel):
    budgets: list[BudgetOut]


class AlertOut(BaseModel):
    """One alert; kinds add their own details (budget, threshold, spent_micros...)."""

    model_config = ConfigDict(extra="allow")

    type: str
    team: str
    message: str
    at: datetime


class AlertList(BaseModel):
    alerts: list[AlertOut] = Field(description="Newest first.")


class BreakerOut(BaseModel):
    scope: str = Field(description="provider:<name> or model:<name>.")
    state: Literal["closed", "open", "half_open"]
    calls: int = Field(description="Calls in the sliding window.")
    failures: int
    failure_rate: float
    consecutive_failures: int
    opened_at: datetime | None = None
    retry_at: datetime | None = Field(default=None, description="When an open breaker half-opens.")
    transitions: int


class BreakerTransitionOut(BaseModel):
    scope: str
    from_: str = Field(alias="from")
    to: str
    at: datetime
    reason: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class BreakerList(BaseModel):
    breakers: list[BreakerOut]
    transitions: list[BreakerTransitionOut] = Field(description="Recent ones, newest first.")
