"""What routes did, per route, team and feature: tier mix, escalations, and cost against the
all-flagship counterfactual (each finished request's tokens at its route's last tier's prices).

Read from the requests a route decided (``route_decision``), finished in the window; the
aggregation is in Python over one narrow query, as the decision is a JSON document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config.broker_toml import BrokerConfig
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
    escalated: int = 0
    cache_hits: int = 0
    cost_micros: int = 0
    flagship_cost_micros: int = 0  # the same tokens at the last tier's prices

    @property
    def escalation_rate(self) -> float:
        return self.escalated / self.requests if self.requests else 0.0


def route_stats(
    session: Session, config: BrokerConfig, team: str | None = None, since: datetime | None = None
) -> list[RouteStats]:
    query = select(
        Request.route,
        Request.team_id,
        Request.feature,
        Request.route_decision,
        Request.cache_hit,
        Request.cost_micros,
        Request.cost_avoided_micros,
        Request.input_tokens,
        Request.cached_input_tokens,
        Request.output_tokens,
    ).where(Request.route.is_not(None), Request.status == RequestStatus.SUCCEEDED)
    if team is not None:
        query = query.where(Request.team_id == team)
    if since is not None:
        query = query.where(Request.finished_at >= since)
    groups: dict[tuple[str, str, str], RouteStats] = {}
    for row in session.execute(query):
        stats = groups.setdefault(
            (row.route, row.team_id, row.feature), RouteStats(row.route, row.team_id, row.feature)
        )
        decision = row.route_decision or {}
        stats.requests += 1
        tier = int(decision.get("tier", 0))
        stats.by_tier[tier] = stats.by_tier.get(tier, 0) + 1
        stats.escalated += bool(decision.get("escalated"))
        stats.cost_micros += row.cost_micros or 0
        route = config.route(row.route)
        if row.cache_hit:
            stats.cache_hits += 1
            continue  # answered free either way: no flagship call in the counterfactual
        if route is not None:
            flagship = config.model(route.tiers[-1])
            stats.flagship_cost_micros += cost_micros(
                [
                    (row.input_tokens or 0, flagship.input_price),
                    (row.cached_input_tokens or 0, flagship.cached_input_price),
                    (row.output_tokens or 0, flagship.output_price),
                ]
            )
    return [groups[key] for key in sorted(groups)]
