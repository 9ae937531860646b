"""``inference-broker report``: spend from ``/v1/reports`` as a table, CSV or JSON, and a chart;
``report routes``: what routes did (tier mix, escalations, cost against all on the flagship).

It takes either kind of key: the admin key sees every team (and ``--team`` narrows), a team's
key sees that team. The server does the grouping and checks the options, so a bad ``--by`` is
refused with the server's one-line message, like any other HTTP error (exit 1). ``report
routes`` goes through :class:`broker.client.BrokerClient`, whose errors are the same.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import click
import httpx
from rich.console import Console
from rich.table import Table

from broker.client import BrokerClient
from broker.client._base import parse, raise_for_status
from broker.client._errors import unreachable
from broker.money import format_usd
from broker.schemas.reports import RouteReportOut, RouteStatsOut, SpendReportOut, SpendRowOut

console = Console()  # the table is the command's output: stdout
notes = Console(stderr=True)  # where the chart went: stderr, so CSV/JSON on stdout stay clean
DEFAULT_URL = "http://127.0.0.1:8140"
_DAY = click.DateTime(formats=["%Y-%m-%d"])
_NUMBERS = (
    ("requests", "requests"),
    ("attempts", "attempts"),
    ("input tokens", "input_tokens"),
    ("cached input", "cached_input_tokens"),
    ("output tokens", "output_tokens"),
    ("cache hits", "cache_hits"),
)


@dataclass(frozen=True)
class _Target:
    """The group's ``--url``, ``--api-key`` and ``--team``, for a subcommand given none."""

    url: str
    key: str | None
    team: str | None


def _key(key: str | None) -> str:
    if not key:
        raise click.UsageError(
            "no key: pass --api-key, or set BROKER_ADMIN_KEY (every team) or BROKER_API_KEY "
            "(your team)"
        )
    return key


def _get(url: str, key: str | None, path: str, params: dict[str, str | int]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {_key(key)}"}
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=60.0) as http:
            response = http.get(path, params=params)
    except httpx.TransportError as exc:
        raise unreachable(url, exc) from exc
    raise_for_status(response)
    return response


def _title(report: SpendReportOut) -> str:
    since, until = report.since, report.until
    if since and until:
        span = f"{since} to {until}" if since != until else f"{since}"
    else:
        span = f"from {since}" if since else (f"up to {until}" if until else "all time")
    who = f"team {report.team}" if report.team else "all teams"
    return f"Spend by {', '.join(report.group_by)}: {who}, {span} (UTC)"


def _cells(row: SpendRowOut) -> list[str]:
    numbers = [f"{getattr(row, name):,}" for _, name in _NUMBERS]
    return [
        *numbers,
        format_usd(row.cost_micros),
        format_usd(row.cache_savings_micros),
        format_usd(row.cost_avoided_micros),
    ]


def print_table(report: SpendReportOut) -> None:
    """One line per group and a bold totals line; money through :func:`format_usd`."""
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console.width = 160
    table = Table(title=_title(report))
    for dim in report.group_by:
        table.add_column(dim)
    for heading, _ in _NUMBERS:
        table.add_column(heading, justify="right")
    table.add_column("cost", justify="right")
    table.add_column("prompt-cache savings", justify="right")
    table.add_column("cost avoided (hits)", justify="right")
    for row in report.rows:
        values = row.model_dump(mode="json")
        table.add_row(*(str(values[d]) for d in report.group_by), *_cells(row))
    blanks = [""] * (len(report.group_by) - 1)
    table.add_section()
    table.add_row("total", *blanks, *_cells(report.totals), style="bold")
    console.print(table)


def _mix(row: RouteStatsOut) -> str:
    """``gpt-4o-mini: 1; gpt-4o: 3``: where the requests ended, cheapest tier first (tier
    indexes from a server that does not name the models)."""
    counts = row.by_model or {f"tier {tier}": n for tier, n in row.by_tier.items()}
    return "; ".join(f"{name}: {n:,}" for name, n in counts.items())


def _saved(cost_micros: int, flagship_micros: int) -> str:
    return f"{1 - cost_micros / flagship_micros:.1%}" if flagship_micros else "-"


def _route_cells(requests: int, escalated: int, hits: int, cost: int, flagship: int) -> list[str]:
    rate = f" ({escalated / requests:.1%})" if requests else ""
    return [
        f"{requests:,}",
        f"{escalated:,}{rate}",
        f"{hits:,}",
        format_usd(cost),
        format_usd(flagship),
        _saved(cost, flagship),
    ]


def print_routes(report: RouteReportOut, team: str | None) -> None:
    """One line per route, team and feature, and a bold totals line."""
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console.width = 160
    who = f"team {team}" if team else "every team this key sees"
    caption = None if report.routes else "nothing routed has succeeded yet"
    table = Table(title=f"Routes: {who}, all time", caption=caption)
    for heading in ("route", "team", "feature", "tier mix"):
        table.add_column(heading)
    for heading in ("requests", "escalated", "cache hits", "charged", "all-flagship", "saved"):
        table.add_column(heading, justify="right")
    for r in report.routes:
        numbers = (r.requests, r.escalated, r.cache_hits, r.cost_micros, r.flagship_cost_micros)
        table.add_row(r.route, r.team, r.feature, _mix(r), *_route_cells(*numbers))
    if report.routes:
        sums = [
            sum(getattr(r, name) for r in report.routes)
            for name in ("requests", "escalated", "cache_hits", "cost_micros")
        ]
        flagship = sum(r.flagship_cost_micros for r in report.routes)
        table.add_section()
        table.add_row("total", "", "", "", *_route_cells(*sums, flagship), style="bold")
    console.print(table)


def register(main: click.Group) -> None:
    @main.group(invoke_without_command=True)
    @click.option(
        "--by",
        "group_by",
        default="team,feature,model",
        show_default=True,
        help="Comma-separated: team, feature, model, provider, day (UTC).",
    )
    @click.option("--since", type=_DAY, default=None, help="First UTC day, YYYY-MM-DD.")
    @click.option("--until", type=_DAY, default=None, help="Last UTC day, included.")
    @click.option("--team", default=None, help="One team (admin key; a team key sees its own).")
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "csv", "json"]),
        default="table",
        show_default=True,
    )
    @click.option(
        "--png",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        default=None,
        help="Also write a chart of daily spend per team to this PNG file.",
    )
    @click.option(
        "--days",
        type=click.IntRange(1, 366),
        default=30,
        show_default=True,
        help="Days up to today the --png chart covers.",
    )
    @click.option(
        "--url",
        envvar="BROKER_URL",
        default=DEFAULT_URL,
        show_default=True,
        help="The broker's API (env BROKER_URL).",
    )
    @click.option(
        "--api-key",
        envvar=["BROKER_ADMIN_KEY", "BROKER_API_KEY"],
        default=None,
        help="The admin key or a team's key (env BROKER_ADMIN_KEY, then BROKER_API_KEY).",
    )
    @click.pass_context
    def report(
        ctx: click.Context,
        group_by: str,
        since: datetime | None,
        until: datetime | None,
        team: str | None,
        fmt: str,
        png: Path | None,
        days: int,
        url: str,
        api_key: str | None,
    ) -> None:
        """Spend from the cost ledger, grouped and totalled; optionally a PNG chart.
        `report routes`: what routes did."""
        url = url.rstrip("/")
        if ctx.invoked_subcommand is not None:
            ctx.obj = _Target(url, api_key, team)
            return
        wire = "csv" if fmt == "csv" else "json"
        params: dict[str, str | int] = {"group_by": group_by, "format": wire}
        for name, value in (("since", since), ("until", until)):
            if value is not None:
                params[name] = value.date().isoformat()
        if team:
            params["team"] = team
        response = _get(url, api_key, "/v1/reports/spend", params)
        if fmt == "csv":
            sys.stdout.write(response.text)
        elif fmt == "json":
            sys.stdout.write(json.dumps(response.json(), indent=2) + "\n")
        else:
            print_table(parse(response, SpendReportOut))
        if png is not None:
            chart_params: dict[str, str | int] = {"days": days, **({"team": team} if team else {})}
            chart = _get(url, api_key, "/v1/reports/daily.png", chart_params)
            try:
                png.write_bytes(chart.content)
            except OSError as exc:
                raise click.ClickException(f"cannot write {png}: {exc.strerror}") from exc
            notes.print(f"chart of daily spend, last {days} days: {png.resolve()}", soft_wrap=True)

    @report.command("routes")
    @click.option("--team", default=None, help="One team (admin key; a team key sees its own).")
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["table", "json"]),
        default="table",
        show_default=True,
    )
    @click.option("--url", default=None, help="The broker's API (default: report's --url).")
    @click.option("--api-key", default=None, help="The key (default: report's --api-key).")
    @click.pass_context
    def routes(
        ctx: click.Context, team: str | None, fmt: str, url: str | None, api_key: str | None
    ) -> None:
        """Per route, team and feature: where requests ended (tier mix), how many a cascade
        escalated, and what they cost against all on the route's flagship."""
        parent: _Target = ctx.obj
        team = team or parent.team
        key = _key(api_key or parent.key)
        with BrokerClient((url or parent.url).rstrip("/"), key, timeout=60.0) as client:
            found = client.route_report(team=team)
        if fmt == "json":
            sys.stdout.write(json.dumps(found.model_dump(mode="json"), indent=2) + "\n")
        else:
            print_routes(found, team)
