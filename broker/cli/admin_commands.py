"""Operator commands: ``teams`` (the fairness table), ``teams set-weight`` and ``reset-weight``.

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

from broker.client._base import parse, raise_for_status
from broker.client._errors import unreachable
from broker.schemas import TeamList, TeamStatusOut

console = Console()  # the table is the command's output: stdout
DEFAULT_URL = "http://127.0.0.1:8140"


@dataclass(frozen=True)
class _Admin:
    url: str
    key: str | None

    def call(self, method: str, path: str, json: dict[str, Any] | None = None) -> httpx.Response:
        if not self.key:
            raise click.UsageError(
                "no admin key: pass --admin-key or set BROKER_ADMIN_KEY "
                "(the development stack's key is ib-dev-admin)"
            )
        headers = {"Authorization": f"Bearer {self.key}"}
        try:
            with httpx.Client(base_url=self.url, headers=headers, timeout=30.0) as http:
                response = http.request(method, path, json=json)
        except httpx.TransportError as exc:
            raise unreachable(self.url, exc) from exc
        raise_for_status(response)
        return response


def _options(inherit: bool):
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


def _admin(ctx: click.Context, url: str | None, admin_key: str | None) -> _Admin:
    parent: _Admin = ctx.obj
    return _Admin((url or parent.url).rstrip("/"), admin_key or parent.key)


def _weight_path(team: str) -> str:
    return f"/v1/admin/teams/{quote(team, safe='')}/weight"


_MARKS = {
    "override": ("*", "* set at run time; `teams reset-weight TEAM` goes back to broker.toml"),
    "default": ("†", "† not in broker.toml any more: drains at weight 1"),
}


def _print_table(teams: list[TeamStatusOut]) -> None:
    sources = {t.weight_source for t in teams}
    caption = "\n".join(note for source, (_, note) in _MARKS.items() if source in sources)
    table = Table(caption=caption or None, caption_justify="left")
    table.add_column("team")
    for name in ("weight", "counter", "high", "medium", "low", "service", "share"):
        table.add_column(name, justify="right")
    for t in teams:
        mark = _MARKS[t.weight_source][0] if t.weight_source in _MARKS else ""
        table.add_row(
            t.team,
            f"{t.weight:g}{mark}",
            f"{t.counter:,.1f}",
            str(t.backlog.high),
            str(t.backlog.medium),
            str(t.backlog.low),
            f"{t.service:,.0f}",
            f"{t.share * 100:.1f}%",
        )
    console.print(table)


def register(main: click.Group) -> None:
    @main.group(invoke_without_command=True)
    @_options(inherit=False)
    @click.pass_context
    def teams(ctx: click.Context, url: str, admin_key: str | None) -> None:
        """Each team's weight, fairness counter, backlog per priority and share of service."""
        ctx.obj = _Admin(url.rstrip("/"), admin_key)
        if ctx.invoked_subcommand is None:
            listing = parse(ctx.obj.call("GET", "/v1/admin/teams"), TeamList)
            _print_table(listing.teams)

    @teams.command("set-weight")
    @click.argument("team")
    @click.argument("weight", type=float)
    @_options(inherit=True)
    @click.pass_context
    def set_weight(
        ctx: click.Context, team: str, weight: float, url: str | None, admin_key: str | None
    ) -> None:
        """Give TEAM the fair-share WEIGHT from now on (the scheduler picks it up in seconds)."""
        admin = _admin(ctx, url, admin_key)
        response = admin.call("PUT", _weight_path(team), {"weight": weight})
        _print_table([parse(response, TeamStatusOut)])

    @teams.command("reset-weight")
    @click.argument("team")
    @_options(inherit=True)
    @click.pass_context
    def reset_weight(ctx: click.Context, team: str, url: str | None, admin_key: str | None) -> None:
        """Drop TEAM's run-time weight: back to its weight in broker.toml."""
        admin = _admin(ctx, url, admin_key)
        _print_table([parse(admin.call("DELETE", _weight_path(team)), TeamStatusOut)])
