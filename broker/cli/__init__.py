"""``inference-broker``: run the stack or one of its processes, and talk to a running broker.

Process commands (``up``, ``api``, ``scheduler``, ``worker``, ``webhooks``, ``simulate``,
``flower``) read settings from the environment (``BROKER_*``, ``REDIS_URL``, ``DATABASE_URL``);
client commands (``submit``, ``status``, ``results``) take ``--url`` and ``--api-key`` (or
``BROKER_URL``/``BROKER_API_KEY``); operator commands (``teams``, ``budgets``, ``alerts``,
``keys``, ``breakers``) take ``--url`` and ``--admin-key`` (or ``BROKER_ADMIN_KEY``); ``report``
takes either kind of key as ``--api-key`` (``BROKER_ADMIN_KEY``, then ``BROKER_API_KEY``).
"""

from __future__ import annotations

import secrets
import signal
import sys
import time

import click
from rich.console import Console
from rich.text import Text

from broker.cli import (
    admin_commands,
    cache_commands,
    client_commands,
    key_commands,
    report_commands,
    router_commands,
)
from broker.config.broker_toml import hash_api_key
from broker.config.settings import Settings
from broker.errors import BrokerError

console = Console(stderr=True)


def _settings() -> Settings:
    settings = Settings()
    _ = settings.config  # a bad broker.toml fails here, naming the file, the key and the reason
    return settings


def _logging(settings: Settings, process: str) -> None:
    """Text or JSON lines on stderr, secrets masked, ``process`` in each JSON line."""
    from broker.telemetry.logs import configure_logging

    configure_logging(settings, process)


class _Group(click.Group):
    """Turn our own errors into one clear line and exit code 1, not a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokerError as exc:
            # Text, not markup: a message may hold brackets (requests[3]); one line, unwrapped.
            console.print(Text("error: ", style="red") + Text(str(exc)), soft_wrap=True)
            sys.exit(1)


@click.group(cls=_Group)
@click.version_option(package_name="inference-broker")
def main() -> None:
    """Queue-based LLM inference broker."""


@main.command()
def up() -> None:
    """Run the whole stack in the foreground; Ctrl-C stops all of it."""
    from broker.local.stack import Stack

    settings = _settings()
    stop = _stop_on_signals()
    with Stack(settings) as stack:
        console.print(f"[green]inference-broker is up[/] at {stack.api_url}")
        console.print(f"logs: {stack.log_dir}/   database: {settings.database_url_or_default}")
        console.print("Ctrl-C to stop")
        while not stop["now"]:
            dead = stack.dead_children()
            if dead:
                names = ", ".join(f"{c.name} (log: {c.log_path})" for c in dead)
                raise BrokerError(f"stopped because a process exited: {names}")
            time.sleep(0.5)
    console.print("stopped")


def _stop_on_signals() -> dict[str, bool]:
    flag = {"now": False}

    def handler(*_):
        flag["now"] = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return flag


@main.command()
def migrate() -> None:
    """Create or upgrade the result store's schema."""
    from broker.store import Database

    settings = _settings()
    Database(settings.database_url_or_default).migrate()
    console.print(f"schema is current: {settings.database_url_or_default}")


@main.command()
def api() -> None:
    """Run the HTTP API (uvicorn)."""
    import uvicorn

    from broker.api import create_app
    from broker.store import Database

    settings = _settings()
    _logging(settings, "api")
    Database(settings.database_url_or_default).migrate()
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level="warning",
        log_config=None,  # uvicorn's lines go through our handler (text or JSON)
        access_log=False,
    )


@main.command()
def scheduler() -> None:
    """Run the scheduler: team queues → provider queues."""
    from schedulers.service import run_scheduler

    settings = _settings()
    _logging(settings, "scheduler")
    run_scheduler(settings)


@main.command()
@click.option("--provider", required=True, help="Provider name from broker.toml.")
@click.option("--concurrency", type=int, default=None, help="Overrides the provider's pool size.")
def worker(provider: str, concurrency: int | None) -> None:
    """Run one provider's worker pool."""
    from workers.pool import run_worker

    settings = _settings()
    _logging(settings, "worker")
    run_worker(settings, provider, concurrency)


@main.command()
def webhooks() -> None:
    """Run the webhooks worker: signed POSTs of job events, retried with backoff."""
    from workers.webhooks import run_webhook_worker

    settings = _settings()
    _logging(settings, "webhooks")
    run_webhook_worker(settings)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
def simulate(host: str, port: int) -> None:
    """Run the simulated provider (OpenAI and Anthropic wire formats; knobs: BROKER_SIM_*)."""
    from workers.simulator import SimulatorSettings, serve

    serve(SimulatorSettings(), host=host, port=port)


@main.command()
@click.option("--address", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=5555, show_default=True, type=int)
def flower(address: str, port: int) -> None:
    """Run Flower on the workers' queues (basic auth: BROKER_FLOWER_BASIC_AUTH)."""
    from broker.cli.flower_command import run_flower

    settings = _settings()
    _logging(settings, "flower")
    run_flower(settings, address=address, port=port)


@main.command()
@click.option("--requests", "count", default=320, show_default=True, help="Demo batch size.")
def demo(count: int) -> None:
    """Start the stack, run a demo batch over three teams and eight features, print the costs."""
    from broker.local.demo import run_demo

    run_demo(_settings(), count)


@main.command()
def keygen() -> None:
    """Print a new API key and the sha256 to put in broker.toml (a team's api_key_sha256,
    admin_api_key_sha256 or metrics_api_key_sha256); it takes effect when the API restarts.
    For a team's key that works at once and can be rotated or revoked at run time, use
    `keys create TEAM`."""
    key = "ib-" + secrets.token_urlsafe(32)
    click.echo(f"api key (give to the team, shown once): {key}")
    click.echo(f'api_key_sha256 = "{hash_api_key(key)}"')


client_commands.register(main)
admin_commands.register(main)
key_commands.register(main)
report_commands.register(main)
cache_commands.register(main)
router_commands.register(main)
