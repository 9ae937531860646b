"""What routes did, per route, team and feature: tier mix, escalations, and cost against the
all-flagship counterfactual (each finished request's tokens at its route's last tier's prices).

Read from the requests a route decided (``route_decision``) that succeeded; the aggregation is
in Python over one narrow query, as the decision is a JSON document. The same reading serves
``GET /v1/reports/routes`` (:func:`route_stats`), the routed series of ``/metrics`` (the same
function, all time) and the routing panel of the daily chart (:func:`daily_route_costs`), so
the three agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Row, select
from sqlalchemy.orm import Session

from broker.config.broker_toml import BrokerConfig
from broker.errors import InvalidRequest
from broker.money import cost_micros
from broker.states import RequestStatus
from broker.store.models import Request


@dataclass
class RouteStats:
    route: str
    team: str
    feature: str
    requests: int = 0
    by_tier: dict[int, int] = field(default_factory=dict)  # where each request ended
    by_model: dict[str, int] = field(default_factory=dict)  # the same, by the tier's model
    escalated: int = 0
    cache_hits: int = 0
    cost_micros: int = 0
    flagship_cost_micros: int = 0  # the same tokens at the last tier's prices

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.requests if self.requests else 0.0

    def add(self, other: RouteStats) -> None:
        """Count ``other``'s figures in too (its route, team and feature are not looked at)."""
        self.requests += other.requests
        for tier, n in other.by_tier.items():
            self.by_tier[tier] = self.by_tier.get(tier, 0) + n
        for model, n in other.by_model.items():
            self.by_model[model] = self.by_model.get(model, 0) + n
        self.escalated += other.escalated
        self.cache_hits += other.cache_hits
        self.cost_micros += other.cost_micros
        self.flagship_cost_micros += other.flagship_cost_micros


@dataclass(frozen=True, slots=True)
class RoutedDay:
    """Routed requests that finished on one UTC day: what they were charged and what the same
    tokens would have cost on their routes' flagships."""

    requests: int = 0
    cost_micros: int = 0
    flagship_cost_micros: int = 0


def _routed(
    session: Session,
    team: str | None,
    since: datetime | None,
    before: datetime | None = None,
) -> Iterator[Row[Any]]:
    """Succeeded requests a route decided, finished at or after ``since`` and before
    ``before`` (both optional), with the columns the figures need."""
    query = select(
        Request.route,
        Request.team_id,
        Request.feature,
        Request.route_decision,
        Request.cache_hit,
        Request.cost_micros,
        Request.input_tokens,
        Request.cached_input_tokens,
        Request.output_tokens,
        Request.finished_at,
    ).where(Request.route.is_not(None), Request.status == RequestStatus.SUCCEEDED)
    if team is not None:
        query = query.where(Request.team_id == team)
    if since is not None:
        query = query.where(Request.finished_at >= since)
    if before is not None:
        query = query.where(Request.finished_at < before)
    yield from session.execute(query)


def _flagship_micros(config: BrokerConfig, row: Row[Any]) -> int:
    """The row's tokens at its route's last tier's prices; 0 for a cache hit (answered free
    either way: no flagship call in the counterfactual) or a route no longer configured."""
    route = config.route(row.route)
    if row.cache_hit or route is None:
        return 0
    flagship = config.model(route.tiers[-1])
    return cost_micros(
        [
            (row.input_tokens or 0, flagship.input_price),
            (row.cached_input_tokens or 0, flagship.cached_input_price),
            (row.output_tokens or 0, flagship.output_price),
        ]
    )


def _tier_model(config: BrokerConfig, route_name: str, decision: dict[str, Any], tier: int) -> str:
    """The model the request ended on: the decision's own record (a cascade updates it), else
    the route's tier of that index, else the index itself (a route gone from broker.toml)."""
    model = decision.get("model")
    if isinstance(model, str) and model:
        return model
    route = config.route(route_name)
    if route is not None and 0 <= tier < len(route.tiers):
        return route.tiers[tier]
    return str(tier)


def route_stats(
    session: Session, config: BrokerConfig, team: str | None = None, since: datetime | None = None
) -> list[RouteStats]:
    """One row per (route, team, feature) with anything routed, sorted by that key."""
    groups: dict[tuple[str, str, str], RouteStats] = {}
    for row in _routed(session, team, since):
        stats = groups.setdefault(
            (row.route, row.team_id, row.feature), RouteStats(row.route, row.team_id, row.feature)
        )
        decision = row.route_decision or {}
        stats.requests += 1
        tier = int(decision.get("tier", 0))
        stats.by_tier[tier] = stats.by_tier.get(tier, 0) + 1
        model = _tier_model(config, row.route, decision, tier)
        stats.by_model[model] = stats.by_model.get(model, 0) + 1
        stats.escalated += bool(decision.get("escalated"))
        stats.cost_micros += row.cost_micros or 0
        stats.cache_hits += bool(row.cache_hit)
        stats.flagship_cost_micros += _flagship_micros(config, row)
    for stats in groups.values():
        stats.by_model = _in_tier_order(config, stats.route, stats.by_model)
    return [groups[key] for key in sorted(groups)]


def _in_tier_order(config: BrokerConfig, route_name: str, counts: dict[str, int]) -> dict[str, int]:
    """``counts`` cheapest tier first, as the route lists them; models it no longer lists
    last, by name."""
    route = config.route(route_name)
    tiers = list(route.tiers) if route is not None else []

    def position(model: str) -> tuple[int, str]:
        return (tiers.index(model) if model in tiers else len(tiers), model)

    return {model: counts[model] for model in sorted(counts, key=position)}


def daily_route_costs(
    session: Session,
    config: BrokerConfig,
    *,
    days: int,
    team: str | None = None,
    today: date | None = None,
) -> dict[date, RoutedDay]:
    """Routed requests per UTC day they finished, over the ``days`` days ending ``today``
    (inclusive), every day present (empty where nothing routed finished), oldest first.

    A request is counted on the day it finished, with everything it was charged, the tiers a
    cascade turned down included; the ledger (and so the spend bars beside it) dates each
    charge by its attempt, so an escalation that spans midnight lands on two days there.
    """
    if days < 1:
        raise InvalidRequest("days must be at least 1", field="days")
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    since = datetime.combine(first, time.min, tzinfo=UTC)
    before = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
    sums = {first + timedelta(days=i): [0, 0, 0] for i in range(days)}
    for row in _routed(session, team, since, before):
        day = sums.get(row.finished_at.astimezone(UTC).date())
        if day is None:  # defensive: the query bounds it to the window
            continue
        day[0] += 1
        day[1] += row.cost_micros or 0
        day[2] += _flagship_micros(config, row)
    return {day: RoutedDay(*values) for day, values in sums.items()}
