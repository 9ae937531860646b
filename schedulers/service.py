"""The scheduler process: wiring the policies to Redis, the store and Celery, until a signal."""

from __future__ import annotations

import signal
import threading

import redis

from broker.settings import Settings
from broker.store import Database
from schedulers.capacity import InFlight
from schedulers.dispatch import Dispatcher
from schedulers.leader import Leadership
from schedulers.loop import Scheduler
from schedulers.ratelimits import RateLimits
from schedulers.weights import TeamWeights
from workers.celery_app import create_celery_app


def build_scheduler(
    settings: Settings, db: Database, client: redis.Redis, *, lead: bool = True
) -> Scheduler:
    """The scheduler; with ``lead`` it runs rounds only while it holds the leader lease."""
    config = settings.config
    in_flight = InFlight(client, config, margin=settings.dispatch_margin)
    limits = RateLimits(client, config)
    dispatcher = Dispatcher(config, db, client, create_celery_app(settings), in_flight, limits)
    return Scheduler(
        client,
        config,
        in_flight,
        limits,
        dispatcher,
        weights=TeamWeights(db, config),
        leadership=Leadership(client, config.scheduler.lease_s) if lead else None,
    )


def run_scheduler(settings: Settings) -> None:
    db = Database(settings.database_url_or_default)
    client = redis.Redis.from_url(settings.redis_url)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        build_scheduler(settings, db, client).run_forever(stop)
    finally:
        client.close()
        db.dispose()
