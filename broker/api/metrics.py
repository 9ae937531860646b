"""``GET /metrics``: the whole system's Prometheus series, in the Prometheus text format.

The series (see :mod:`broker.metrics`) are read from Redis at scrape time, so one API process
reports the work of every scheduler and worker process, wherever they run.

No API key is asked for: Prometheus scrapes this on the API's own port, and operators own
Prometheus. What it shows is chosen for that: per team only team ids, queue depths and budgets
(limit and remaining per ``[[budgets]]`` id); nothing of jobs, requests, prompts or results; per
provider and model only counts, tokens, cost and latency; never a provider API key or any other
secret. Put the port behind the network's own controls if that is still too much. The route has
a router of its own, so authentication can be added here later without touching the others.

Redis (or, for the budgets, the database) unreachable at scrape time: 503 with the API's usual
JSON error body, never a half-written page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from broker.api import admin
from broker.api.errors import store_errors
from broker.metrics import BrokerCollector, BudgetReading
from broker.schemas import ErrorBody

if TYPE_CHECKING:
    from broker.api.app import ApiResources

router = APIRouter(tags=["metrics"], responses={503: {"model": ErrorBody}})


def registry(resources: ApiResources) -> CollectorRegistry:
    """One registry per app (never prometheus_client's global one: tests build many apps)."""

    def budgets() -> list[BudgetReading]:
        if not resources.config.budgets:
            return []
        return [
            BudgetReading(b.id, b.limit_micros, b.remaining_micros)
            for b in admin.budget_views(resources)
        ]

    built = CollectorRegistry(auto_describe=False)
    built.register(BrokerCollector(resources.redis, resources.config, budgets))
    return built


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
)
def metrics(request: Request) -> Response:
    """Every series of the broker, read from Redis now (Prometheus text format; OpenMetrics
    when the scraper asks for it)."""
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    with store_errors():
        body = encode(request.app.state.metrics)
    return Response(content=body, media_type=content_type)
