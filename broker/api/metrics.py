"""``GET /metrics``: the whole system's Prometheus series, in the Prometheus text format.

The series (see :mod:`broker.telemetry.metrics`) are read from Redis at scrape time, so one API process
reports the work of every scheduler and worker process, wherever they run.

Who sees what: the metrics key (``metrics_api_key_sha256``, what Prometheus scrapes with:
``authorization`` in its scrape config) and the admin key see every series; a team's key sees
its own team's queue depths, parked requests and budgets, and the breakers; no key is a 401.
Even the operators' view holds, per team, only team ids, queue depths, budgets (limit and
remaining per ``[[budgets]]`` id) and routed counts and costs per route and feature; nothing of
jobs, requests, prompts or results; per provider and model only counts, tokens, cost and
latency; never a provider API key or any other secret.

Redis (or, for the budgets, the database) unreachable at scrape time: 503 with the API's usual
JSON error body, never a half-written page.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from broker.api import admin
from broker.api.auth import Caller, authenticate_scraper
from broker.api.collector import BrokerCollector, BudgetReading
from broker.api.errors import store_errors
from broker.api.resources import ApiResources, resources_of
from broker.schemas.http import ErrorBody
from broker.store.route_stats import RouteStats, route_stats

router = APIRouter(tags=["metrics"], responses={503: {"model": ErrorBody}})


def registry(resources: ApiResources, team: str | None = None) -> CollectorRegistry:
    """Every series (one registry per app, never prometheus_client's global one: tests build
    many apps), or with ``team`` what that team's key may see."""

    def budgets() -> list[BudgetReading]:
        if not any(team is None or b.team == team for b in resources.config.budgets):
            return []
        return [
            BudgetReading(b.id, b.limit_micros, b.remaining_micros)
            for b in admin.budget_views(resources)
            if team is None or b.team == team
        ]

    def routes() -> list[RouteStats]:
        with resources.db.session() as session:
            return route_stats(session, resources.config)

    built = CollectorRegistry(auto_describe=False)
    built.register(BrokerCollector(resources.redis, resources.config, budgets, team, routes))
    return built


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(request: Request, caller: Caller = Depends(authenticate_scraper)) -> Response:
    """The broker's series, read from Redis now (Prometheus text format; OpenMetrics when the
    scraper asks for it): every one with the metrics or admin key, a team's own with its key."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    if caller.team is None:
        chosen = request.app.state.metrics
    else:
        chosen = registry(resources_of(request), caller.team.id)
    with store_errors():
        body = encode(chosen)
    return Response(content=body, media_type=content_type)
