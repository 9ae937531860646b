"""Response models of ``/v1/reports``, shared by the server and ``inference-broker report``.

Kept beside :mod:`broker.schemas.http` rather than in it: reports are read by operators and finance
as much as by the teams that submit jobs, and grow on their own schedule.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field


class SpendRowOut(BaseModel):
    """One group of the report; only the dimensions it was grouped by are present."""

    team: str | None = None
    feature: str | None = None
    model: str | None = None
    provider: str | None = None
    day: date | None = Field(default=None, description="UTC calendar day.")
    requests: int = Field(
        description="Distinct requests in this group: charged ones and cache hits."
    )
    attempts: int = Field(description="Charged attempts: retries and fallbacks count each.")
    input_tokens: int = Field(description="Uncached input tokens.")
    cached_input_tokens: int
    output_tokens: int
    cost_micros: int = Field(description="Integer micro-dollars (1 USD = 1,000,000).")
    cost_usd: str
    cache_savings_micros: int = Field(
        description="What the cached input tokens would have cost more at the full input price."
    )
    cache_savings_usd: str
    cache_hits: int = Field(
        default=0, description="Requests answered from the response cache (charged 0)."
    )
    cost_avoided_micros: int = Field(
        default=0, description="What the answers those hits reused had cost."
    )
    cost_avoided_usd: str = "$0.000000"


class SpendReportOut(BaseModel):
    group_by: list[str]
    team: str | None = Field(description="The team the report is limited to; null: every team.")
    since: date | None = Field(description="First UTC day included; null: from the beginning.")
    until: date | None = Field(description="Last UTC day included; null: up to now.")
    rows: list[SpendRowOut]
    totals: SpendRowOut = Field(description="Every row together (no dimensions).")


class RouteStatsOut(BaseModel):
    """What one route did for a team's feature."""

    route: str
    team: str
    feature: str
    requests: int = Field(description="Succeeded requests the route decided.")
    by_tier: dict[str, int] = Field(description="Tier index (0: cheapest) → requests ending there.")
    by_model: dict[str, int] = Field(
        default_factory=dict, description="The same by the tier's model (what the decision says)."
    )
    escalated: int
    escalation_rate: float
    cache_hits: int
    cost_micros: int = Field(description="What they were charged, escalations included.")
    flagship_cost_micros: int = Field(
        description="The same tokens at the route's last tier's prices (hits excluded)."
    )
    saved_vs_flagship: float = Field(description="1 - cost / flagship cost (0 when nothing ran).")


class RouteReportOut(BaseModel):
    routes: list[RouteStatsOut]
