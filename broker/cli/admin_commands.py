"""Operator commands: ``teams`` (the fairness table; ``set-weight``, ``reset-weight``, ``pause``,
``resume``), ``budgets`` (spend against each limit; ``set-limit``, ``reset-limit``), ``breakers``
and ``alerts``.

They call ``/v1/admin`` with the admin key. The Python client (:mod:`broker.client`) is for
teams and stays that way, so these few calls are made here with httpx directly; its error
mapping is reused, so a refusal prints the server's one-line message and exits 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import click
import httpx
from rich.console import Console
from rich.table import Table
from rich.text import Text

from broker.client._base import parse, raise_for_status
from broker.client._errors import unreachable
from broker.schemas.http import (
    AlertList,
    BreakerList,
    BudgetList,
    BudgetOut,
    TeamList,
    TeamPauseOut,
    TeamStatusOut,
)

console = Console()  # the table is the command's output: stdout
DEFAULT_URL = "http://127.0.0.1:8140"


@dataclass(frozen=True)
class AdminClient:
    url: str
    key: str | None

    def call(
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        if not self.key:
            raise click.UsageError(
                "no admin key: pass --admin-key or set BROKER_ADMIN_KEY "
                "(the development stack's key is ib-dev-admin)"
            )
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=30.0) as http:
                response = http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        raise_for_status(response)
        return response


def admin_options(inherit: bool):
    """``--url`` and ``--admin-key``, on the group and again on each subcommand.

    On a subcommand they default to None and fall back to the group's (which read the
    environment), so both ``teams --url U set-weight ...`` and ``teams set-weight --url U ...``
    work.
    """

    def apply(f):
        f = click.option(
            "--admin-key",
            envvar=None if inherit else "BROKER_ADMIN_KEY",
            default=None,
            help="The operators' key (env BROKER_ADMIN_KEY).",
        )(f)
        return click.option(
            "--url",
            envvar=None if inherit else "BROKER_URL",
            default=None if inherit else DEFAULT_URL,
            show_default=not inherit,
            help="The broker's API (env BROKER_URL).",
        )(f)

    return apply


def admin_from(ctx: click.Context, url: str | None, admin_key: str | None) -> AdminClient:
    parent: AdminClient = ctx.obj
    return AdminClient((url or parent.url).rstrip("/"), admin_key or parent.key)


def _team_path(team: str, action: str) -> str:
    return f"/v1/admin/teams/{quote(team, safe='')}/{action}"


_MARKS = {
    "override": ("*", "* set at run time; `teams reset-weight TEAM` goes back to broker.toml"),
    "default": ("†", "† not in broker.toml any more: drains at weight 1"),
}


def _print_table(teams: list[TeamStatusOut]) -> None:
    sources = {t.weight_source for t in teams}
    notes = [note for source, (_, note) in _MARKS.items() if source in sources]
    notes += [f"{t.team} is paused: {t.paused_reason}" for t in teams if t.paused]
    table = Table(caption=Text("\n".join(notes)) if notes else None, caption_justify="left")
    table.add_column("team")
    for name in ("weight", "counter", "high", "medium", "low", "parked", "service", "share"):
        table.add_column(name, justify="right")
    table.add_column("state")
    for t in teams:
        mark = _MARKS[t.weight_source][0] if t.weight_source in _MARKS else ""
        table.add_row(
            t.team,
            f"{t.weight:g}{mark}",
            f"{t.counter:,.1f}",
            str(t.backlog.high),
            str(t.backlog.medium),
            str(t.backlog.low),
            str(t.parked),
            f"{t.service:,.0f}",
            f"{t.share * 100:.1f}%",
            "[red]paused[/]" if t.paused else "",
        )
    print_wide(table)


def _limit_path(budget_id: str) -> str:
    return f"/v1/admin/budgets/{quote(budget_id, safe='/')}/limit"


def _print_budgets(budgets: list[BudgetOut]) -> None:
    if not budgets:
        console.print(Text("no budgets: broker.toml has no [[budgets]]"))
        return
    renewals: dict[str, set[str]] = {}
    for b in budgets:
        renewals.setdefault(b.window, set()).add(f"{b.window_end:%Y-%m-%d %H:%M}")
    renew = ", ".join(f"{w} {' / '.join(sorted(ends))}" for w, ends in renewals.items())
    notes = [f"renews (UTC): {renew}", "used = (spent + reserved) / limit"]
    if any(b.limit_source == "override" for b in budgets):
        notes.append("* set at run time; `budgets reset-limit ID` goes back to broker.toml")
    table = Table(caption=Text("\n".join(notes)), caption_justify="left")
    table.add_column("budget", no_wrap=True)
    table.add_column("window", no_wrap=True)
    for name in ("limit", "spent", "reserved", "remaining", "used"):
        table.add_column(name, justify="right", no_wrap=True)
    for b in budgets:
        used = (b.spent_micros + b.reserved_micros) / max(b.limit_micros, 1)
        style = "red" if used >= 1 else "yellow" if used >= 0.8 else "default"
        table.add_row(
            b.id,
            b.window,
            b.limit_usd + ("*" if b.limit_source == "override" else ""),
            b.spent_usd,
            b.reserved_usd,
            b.remaining_usd,
            f"[{style}]{used * 100:.1f}%[/]",
        )
    print_wide(table)


def print_wide(table: Table) -> None:
    """Piped or captured, a table is not squeezed into 80 columns (as in ``report``)."""
    out = console if console.is_terminal else Console(file=console.file, width=160)
    out.print(table)


def _print_alerts(listing: AlertList) -> None:
    if not listing.alerts:
        console.print("no alerts")
        return
    table = Table()
    for name in ("at (UTC)", "team", "type", "message"):
        table.add_column(name)
    for a in listing.alerts:
        table.add_row(f"{a.at:%Y-%m-%d %H:%M:%S}", a.team, a.type, Text(a.message))
    print_wide(table)


def _print_breakers(listing: BreakerList, transitions: int) -> None:
    table = Table()
    for name in ("breaker", "state", "calls", "failure rate", "in a row", "half-opens at (UTC)"):
        table.add_column(name, justify="left" if name in ("breaker", "state") else "right")
    colour = {"closed": "green", "half_open": "yellow", "open": "red"}
    for b in listing.breakers:
        table.add_row(
            b.scope,
            f"[{colour[b.state]}]{b.state}[/]",
            str(b.calls),
            f"{b.failure_rate * 100:.0f}%",
            str(b.consecutive_failures),
            f"{b.retry_at:%H:%M:%S}" if b.retry_at else "",
        )
    print_wide(table)
    for t in listing.transitions[:transitions]:
        line = f"{t.at:%Y-%m-%d %H:%M:%S} {t.scope}: {t.from_} → {t.to} ({t.reason})"
        console.print(Text(line), soft_wrap=True)


def register(main: click.Group) -> None:
    @main.group(invoke_without_command=True)
    @admin_options(inherit=False)
    @click.pass_context
    def teams(ctx: click.Context, url: str, admin_key: str | None) -> None:
        """Each team's weight, fairness counter, backlog per priority, share of service and
        whether it is paused."""
        ctx.obj = AdminClient(url.rstrip("/"), admin_key)
        if ctx.invoked_subcommand is None:
            listing = parse(ctx.obj.call("GET", "/v1/admin/teams"), TeamList)
            _print_table(listing.teams)

    @teams.command("set-weight")
    @click.argument("team")
    @click.argument("weight", type=float)
    @admin_options(inherit=True)
    @click.pass_context
    def set_weight(
        ctx: click.Context, team: str, weight: float, url: str | None, admin_key: str | None
    ) -> None:
        """Give TEAM the fair-share WEIGHT from now on (the scheduler picks it up in seconds)."""
        admin = admin_from(ctx, url, admin_key)
        response = admin.call("PUT", _team_path(team, "weight"), {"weight": weight})
        _print_table([parse(response, TeamStatusOut)])

    @teams.command("reset-weight")
    @click.argument("team")
    @admin_options(inherit=True)
    @click.pass_context
    def reset_weight(ctx: click.Context, team: str, url: str | None, admin_key: str | None) -> None:
        """Drop TEAM's run-time weight: back to its weight in broker.toml."""
        admin = admin_from(ctx, url, admin_key)
        _print_table([parse(admin.call("DELETE", _team_path(team, "weight")), TeamStatusOut)])

    @teams.command("pause")
    @click.argument("team")
    @click.option("--reason", default=None, help="Why; shown in `teams` and in the alert.")
    @admin_options(inherit=True)
    @click.pass_context
    def pause(
        ctx: click.Context, team: str, reason: str | None, url: str | None, admin_key: str | None
    ) -> None:
        """Stop serving TEAM's queues until `teams resume TEAM` (submissions still queue)."""
        admin = admin_from(ctx, url, admin_key)
        body = {"reason": reason} if reason else None
        state = parse(admin.call("POST", _team_path(team, "pause"), body), TeamPauseOut)
        already = "" if state.changed else " already"
        console.print(Text(f"{state.team} is{already} paused: {state.reason}"))

    @teams.command("resume")
    @click.argument("team")
    @admin_options(inherit=True)
    @click.pass_context
    def resume(ctx: click.Context, team: str, url: str | None, admin_key: str | None) -> None:
        """Serve TEAM's queues again, whoever paused them."""
        admin = admin_from(ctx, url, admin_key)
        state = parse(admin.call("POST", _team_path(team, "resume")), TeamPauseOut)
        console.print(f"{state.team} resumed" if state.changed else f"{state.team} was not paused")

    @main.group(invoke_without_command=True)
    @admin_options(inherit=False)
    @click.pass_context
    def budgets(ctx: click.Context, url: str, admin_key: str | None) -> None:
        """Each budget in its current window: limit, spent, reserved, remaining, share used."""
        ctx.obj = AdminClient(url.rstrip("/"), admin_key)
        if ctx.invoked_subcommand is None:
            listing = parse(ctx.obj.call("GET", "/v1/admin/budgets"), BudgetList)
            _print_budgets(listing.budgets)

    @budgets.command("set-limit")
    @click.argument("budget_id", metavar="ID")
    @click.argument("usd")
    @admin_options(inherit=True)
    @click.pass_context
    def set_limit(
        ctx: click.Context, budget_id: str, usd: str, url: str | None, admin_key: str | None
    ) -> None:
        """Give budget ID (e.g. product/daily) a limit of USD from now on."""
        admin = admin_from(ctx, url, admin_key)
        body = {"limit_usd": usd.strip().removeprefix("$").replace(",", "")}
        _print_budgets([parse(admin.call("PUT", _limit_path(budget_id), body), BudgetOut)])

    @budgets.command("reset-limit")
    @click.argument("budget_id", metavar="ID")
    @admin_options(inherit=True)
    @click.pass_context
    def reset_limit(
        ctx: click.Context, budget_id: str, url: str | None, admin_key: str | None
    ) -> None:
        """Drop budget ID's run-time limit: back to its limit in broker.toml."""
        admin = admin_from(ctx, url, admin_key)
        _print_budgets([parse(admin.call("DELETE", _limit_path(budget_id)), BudgetOut)])

    @main.command("breakers")
    @click.option("--transitions", default=10, show_default=True, type=click.IntRange(0, 1000))
    @admin_options(inherit=False)
    def breakers(transitions: int, url: str, admin_key: str | None) -> None:
        """Each provider's and model's circuit breaker, and the latest transitions."""
        admin = AdminClient(url.rstrip("/"), admin_key)
        params = {"limit": transitions}
        listing = parse(admin.call("GET", "/v1/admin/breakers", params=params), BreakerList)
        _print_breakers(listing, transitions)

    @main.command("alerts")
    @click.option("--team", default=None, help="Only this team's alerts.")
    @click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 1000))
    @admin_options(inherit=False)
    def alerts(team: str | None, limit: int, url: str, admin_key: str | None) -> None:
        """Recent alerts, newest first: budget thresholds, pauses, resumes."""
        admin = AdminClient(url.rstrip("/"), admin_key)
        params = {"limit": limit} | ({"team": team} if team else {})
        _print_alerts(parse(admin.call("GET", "/v1/admin/alerts", params=params), AlertList))
