"""Operator commands for teams' run-time API keys: ``keys create TEAM``, ``keys list TEAM``,
``keys rotate KEY_ID`` and ``keys revoke KEY_ID``, on ``/v1/admin`` with the admin key (as
:mod:`broker.cli.admin_commands`). A new key is printed once; nothing else can show it again.
"""

from __future__ import annotations

from urllib.parse import quote

import click
from rich.table import Table
from rich.text import Text

from broker.cli.admin_commands import (
    DEFAULT_URL,
    AdminClient,
    admin_from,
    admin_options,
    console,
    print_wide,
)
from broker.client._base import parse
from broker.schemas.keys import ApiKeyCreated, ApiKeyList, ApiKeyOut


def _when(at) -> str:
    return f"{at:%Y-%m-%d %H:%M:%S}" if at is not None else ""


def _print_created(made: ApiKeyCreated) -> None:
    click.echo(f"api key (give to team {made.team}, shown once): {made.key}")
    click.echo(f"id: {made.id}   prefix: {made.prefix}")
    if made.replaces:
        click.echo(f"revoked: {made.replaces} (the key it replaces no longer works)")


def _print_keys(team: str, keys: list[ApiKeyOut]) -> None:
    if not keys:
        console.print(Text(f"no run-time keys for {team} (its broker.toml key is not listed)"))
        return
    table = Table(caption="times in UTC; the keys themselves are not kept", caption_justify="left")
    for name in ("id", "prefix", "created", "last used", "revoked"):
        table.add_column(name, no_wrap=True)
    for k in keys:
        revoked = Text(_when(k.revoked_at), style="red") if k.revoked_at else Text("")
        table.add_row(k.id, k.prefix + "…", _when(k.created_at), _when(k.last_used_at), revoked)
    print_wide(table)


def register(main: click.Group) -> None:
    @main.group()
    @admin_options(inherit=False)
    @click.pass_context
    def keys(ctx: click.Context, url: str, admin_key: str | None) -> None:
        """Teams' API keys made at run time (beside the keys in broker.toml)."""
        ctx.obj = AdminClient((url or DEFAULT_URL).rstrip("/"), admin_key)

    @keys.command("create")
    @click.argument("team")
    @admin_options(inherit=True)
    @click.pass_context
    def create(ctx: click.Context, team: str, url: str | None, admin_key: str | None) -> None:
        """Make a new API key for TEAM; it works at once and is printed only this once."""
        admin = admin_from(ctx, url, admin_key)
        path = f"/v1/admin/teams/{quote(team, safe='')}/keys"
        _print_created(parse(admin.call("POST", path), ApiKeyCreated))

    @keys.command("list")
    @click.argument("team")
    @admin_options(inherit=True)
    @click.pass_context
    def list_(ctx: click.Context, team: str, url: str | None, admin_key: str | None) -> None:
        """TEAM's run-time keys by id and first characters, revoked ones too."""
        admin = admin_from(ctx, url, admin_key)
        path = f"/v1/admin/teams/{quote(team, safe='')}/keys"
        _print_keys(team, parse(admin.call("GET", path), ApiKeyList).keys)

    @keys.command("rotate")
    @click.argument("key_id")
    @admin_options(inherit=True)
    @click.pass_context
    def rotate(ctx: click.Context, key_id: str, url: str | None, admin_key: str | None) -> None:
        """Make a new key for KEY_ID's team (printed once) and revoke KEY_ID at once."""
        admin = admin_from(ctx, url, admin_key)
        path = f"/v1/admin/keys/{quote(key_id, safe='')}/rotate"
        _print_created(parse(admin.call("POST", path), ApiKeyCreated))

    @keys.command("revoke")
    @click.argument("key_id")
    @admin_options(inherit=True)
    @click.pass_context
    def revoke(ctx: click.Context, key_id: str, url: str | None, admin_key: str | None) -> None:
        """Revoke KEY_ID: from the next request on it is refused."""
        admin = admin_from(ctx, url, admin_key)
        path = f"/v1/admin/keys/{quote(key_id, safe='')}"
        gone = parse(admin.call("DELETE", path), ApiKeyOut)
        when = _when(gone.revoked_at)
        console.print(Text(f"{gone.id} ({gone.prefix}…, team {gone.team}) revoked at {when} UTC"))
