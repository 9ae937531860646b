"""``inference-broker cache``: the response cache's hit rates and savings per team and feature,
and ``cache purge``, through the admin API."""

from __future__ import annotations

import click
from rich.table import Table

from broker.cli.admin_commands import AdminClient, admin_from, admin_options, console, print_wide
from broker.client._base import parse
from broker.money import format_usd
from broker.schemas.cache import CachePurgeOut, CacheStatsList


def _print_stats(listing: CacheStatsList) -> None:
    table = Table(title="Response cache per team and feature")
    for heading in ("team", "feature", "mode", "scope"):
        table.add_column(heading)
    for heading in ("requests", "exact", "semantic", "single-flight", "hit rate", "charged"):
        table.add_column(heading, justify="right")
    table.add_column("avoided", justify="right")
    for s in listing.stats:
        table.add_row(
            s.team,
            s.feature,
            s.mode,
            s.scope,
            f"{s.requests:,}",
            f"{s.exact_hits:,}",
            f"{s.semantic_hits:,}",
            f"{s.single_flight_hits:,}",
            f"{s.hit_rate:.1%}",
            format_usd(s.cost_micros),
            format_usd(s.cost_avoided_micros),
        )
    print_wide(table)


def register(main: click.Group) -> None:
    @main.group(invoke_without_command=True)
    @click.option("--team", default=None, help="Only this team.")
    @admin_options(inherit=False)
    @click.pass_context
    def cache(ctx: click.Context, team: str | None, url: str, admin_key: str | None) -> None:
        """Hits (exact, semantic, single-flight), hit rate and cost avoided per team and
        feature."""
        ctx.obj = AdminClient(url.rstrip("/"), admin_key)
        if ctx.invoked_subcommand is None:
            params = {"team": team} if team else None
            _print_stats(
                parse(ctx.obj.call("GET", "/v1/admin/cache", params=params), CacheStatsList)
            )

    @cache.command("purge")
    @click.option("--team", default=None, help="What this team stored.")
    @click.option("--feature", default=None, help="What was stored for this feature.")
    @click.option("--all", "everything", is_flag=True, help="Everything (neither given).")
    @admin_options(inherit=True)
    @click.pass_context
    def purge(
        ctx: click.Context,
        team: str | None,
        feature: str | None,
        everything: bool,
        url: str | None,
        admin_key: str | None,
    ) -> None:
        """Remove cached answers: a team's, a feature's, a team's feature's, or (--all) all."""
        if not (team or feature or everything):
            raise click.UsageError("name --team, --feature or both, or pass --all")
        params = {k: v for k, v in (("team", team), ("feature", feature)) if v}
        admin = admin_from(ctx, url, admin_key)
        done = parse(admin.call("DELETE", "/v1/admin/cache", params=params), CachePurgeOut)
        console.print(f"removed {done.removed:,} cached answers")
