"""The scheduler process: wiring the policies to Redis, the store and Celery, until a signal."""

from __future__ import annotations

import signal
import threading

import redis

from broker.config.settings import Settings
from broker.store import Database
from schedulers.alerts import Alerts
from schedulers.budgets import BudgetLimits, Budgets
from schedulers.caching import CacheCheck
from schedulers.capacity import InFlight
from schedulers.deadlines import Deadlines
from schedulers.dispatch import Dispatcher
from schedulers.holding import Holding
from schedulers.housekeeping import Housekeeping
from schedulers.leader import Leadership
from schedulers.loop import Scheduler
from schedulers.pauses import Pauses
from schedulers.ratelimits import RateLimits
from schedulers.recovery import Recovery
from schedulers.velocity import VelocityBreaker
from schedulers.webhook_outbox import WebhookOutbox
from schedulers.weights import TeamWeights
from workers.breakers import Breakers
from workers.celery_app import create_celery_app


def build_scheduler(
    settings: Settings, db: Database, client: redis.Redis, *, lead: bool = True
) -> Scheduler:
    """The scheduler; with ``lead`` it runs rounds only while it holds the leader lease."""
    config = settings.config
    in_flight = InFlight(client, config, margin=settings.dispatch_margin)
    limits = RateLimits(client, config)
    budget_limits = BudgetLimits(db, config)
    budgets = Budgets(client, db, config, budget_limits)
    celery_app = create_celery_app(settings)
    dispatcher = Dispatcher(config, db, client, celery_app, in_flight, limits, budgets)
    pauses = Pauses(db)
    alerts = Alerts(client, config)
    holding = Holding(client, db, config, budgets)
    housekeeping = Housekeeping(
        Recovery(client, db, config, budgets, alerts),
        holding,
        VelocityBreaker(db, config, budget_limits, pauses, alerts),
        budgets,
        Deadlines(db),
        webhooks=WebhookOutbox(db, celery_app, config),
    )
    return Scheduler(
        client,
        config,
        in_flight,
        limits,
        dispatcher,
        weights=TeamWeights(db, config),
        paused=pauses,
        budgets=budgets,
        holding=holding,
        housekeeping=housekeeping,
        leadership=Leadership(client, config.scheduler.lease_s) if lead else None,
        breakers=Breakers(client, config),
        caching=CacheCheck(client, db, config),
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
