"""``/v1/reports``: spend from the cost ledger, as JSON, CSV or a PNG chart of daily spend, and
what routes did (tier mix, escalations, cost against the all-flagship counterfactual).

A team's key sees its own team only; the admin key sees every team and may narrow to one with
``team=``. Money leaves as integer micro-dollars (exact, for machines) and beside it as a USD
string (for people), in JSON and CSV alike.
"""

from __future__ import annotations

import csv
import io
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response

from broker.api.auth import Caller, authenticate_caller
from broker.api.charts import daily_spend_png
from broker.api.errors import store_errors
from broker.api.resources import resources_of
from broker.money import format_usd
from broker.schemas.http import ErrorBody
from broker.schemas.reports import RouteReportOut, RouteStatsOut, SpendReportOut, SpendRowOut
from broker.store import reports
from broker.store.reports import SpendReport, SpendRow
from broker.store.route_stats import daily_route_costs, route_stats

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    responses={
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)
Asker = Annotated[Caller, Depends(authenticate_caller)]
TeamParam = Annotated[
    str | None,
    Query(max_length=64, description="Admin key: one team. Team key: its own team or nothing."),
]

USD_PLACES = 6  # exact: one micro-dollar is $0.000001
MEASURES = (
    "requests",
    "attempts",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_micros",
    "cost_usd",
    "cache_savings_micros",
    "cache_savings_usd",
    "cache_hits",
    "cost_avoided_micros",
    "cost_avoided_usd",
)


def _invalid(field: str, message: str, value: Any) -> RequestValidationError:
    """A 422 naming ``field``, through the same handler as FastAPI's own parameter checks."""
    error = {"type": "value_error", "loc": ("query", field), "msg": message, "input": value}
    return RequestValidationError([error])


def _row_out(row: SpendRow, group_by: tuple[str, ...]) -> SpendRowOut:
    return SpendRowOut(
        **row.key(group_by),
        requests=row.requests,
        attempts=row.attempts,
        input_tokens=row.input_tokens,
        cached_input_tokens=row.cached_input_tokens,
        output_tokens=row.output_tokens,
        cost_micros=row.cost_micros,
        cost_usd=format_usd(row.cost_micros, places=USD_PLACES),
        cache_savings_micros=row.cache_savings_micros,
        cache_savings_usd=format_usd(row.cache_savings_micros, places=USD_PLACES),
        cache_hits=row.cache_hits,
        cost_avoided_micros=row.cost_avoided_micros,
        cost_avoided_usd=format_usd(row.cost_avoided_micros, places=USD_PLACES),
    )


def report_out(report: SpendReport) -> SpendReportOut:
    return SpendReportOut(
        group_by=list(report.group_by),
        team=report.team,
        since=report.since,
        until=report.until,
        rows=[_row_out(row, report.group_by) for row in report.rows],
        totals=_row_out(report.totals, ()),
    )


def report_csv(report: SpendReport) -> str:
    """Header, one line per group, then a ``total`` line under the first dimension."""
    out = report_out(report)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*report.group_by, *MEASURES])
    for row in out.rows:
        values = row.model_dump(mode="json")
        writer.writerow([values[d] for d in report.group_by] + [values[m] for m in MEASURES])
    totals = out.totals.model_dump(mode="json")
    blanks = [""] * (len(report.group_by) - 1)
    writer.writerow(["total", *blanks, *(totals[m] for m in MEASURES)])
    return buffer.getvalue()


@router.get(
    "/spend",
    response_model=SpendReportOut,
    response_model_exclude_unset=True,
    responses={200: {"content": {"text/csv": {}}}},
)
def spend(
    caller: Asker,
    request: Request,
    group_by: Annotated[
        str, Query(description=f"Comma-separated: {', '.join(reports.DIMENSIONS)}.")
    ] = ",".join(reports.DEFAULT_GROUP_BY),
    since: Annotated[date | None, Query(description="First UTC day, YYYY-MM-DD.")] = None,
    until: Annotated[date | None, Query(description="Last UTC day (included).")] = None,
    team: TeamParam = None,
    format: Annotated[Literal["json", "csv"], Query()] = "json",
):
    """Spend grouped by any of team, feature, model, provider and UTC day, with totals."""
    try:
        dims = reports.parse_group_by(group_by)
    except ValueError as exc:
        raise _invalid("group_by", str(exc), group_by) from exc
    if since is not None and until is not None and since > until:
        raise _invalid("until", f"must be on or after since ({since})", until.isoformat())
    resources = resources_of(request)
    scope = caller.team_filter(resources.config, team)
    with store_errors(), resources.db.session() as session:
        report = reports.spend(session, group_by=dims, team=scope, since=since, until=until)
    if format == "csv":
        return Response(
            report_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="spend.csv"'},
        )
    return report_out(report)


@router.get(
    "/daily.png",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}, "description": "A 1200×600 PNG."}},
)
def daily_png(
    caller: Asker,
    request: Request,
    days: Annotated[int, Query(ge=1, le=366, description="Days up to today (UTC).")] = 30,
    team: TeamParam = None,
) -> Response:
    """Stacked bars of each team's spend per UTC day; an empty ledger says "no spend yet".
    When routed requests cost anything in the window, a lower panel sets what they were
    charged against the same tokens all on their routes' flagships, per day."""
    resources = resources_of(request)
    scope = caller.team_filter(resources.config, team)
    with store_errors(), resources.db.session() as session:
        series = reports.daily_spend_by_team(session, days=days, team=scope)
        avoided = reports.daily_cost_avoided(session, days=days, team=scope)
        routed = daily_route_costs(session, resources.config, days=days, team=scope)
    png = daily_spend_png(series, avoided=avoided, routed=routed)
    return Response(png, media_type="image/png")


@router.get("/routes", response_model=RouteReportOut)
def route_report(caller: Asker, request: Request, team: TeamParam = None) -> RouteReportOut:
    """Per route, team and feature: where requests ended (tier mix), how many a cascade
    escalated, and what they cost against sending every one to the route's flagship."""
    resources = resources_of(request)
    scope = caller.team_filter(resources.config, team)
    with store_errors(), resources.db.session() as session:
        rows = route_stats(session, resources.config, scope)
    return RouteReportOut(
        routes=[
            RouteStatsOut(
                route=r.route,
                team=r.team,
                feature=r.feature,
                requests=r.requests,
                by_tier={str(k): v for k, v in sorted(r.by_tier.items())},
                by_model=dict(r.by_model),  # cheapest tier first
                escalated=r.escalated,
                escalation_rate=round(r.escalation_rate, 4),
                cache_hits=r.cache_hits,
                cost_micros=r.cost_micros,
                flagship_cost_micros=r.flagship_cost_micros,
                saved_vs_flagship=round(1 - r.cost_micros / r.flagship_cost_micros, 4)
                if r.flagship_cost_micros
                else 0.0,
            )
            for r in rows
        ]
    )
