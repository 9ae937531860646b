"""A provider's worker pool: a Celery worker on that provider's queue with an I/O (thread) pool.

Threads, not processes: a pool spends its time waiting on provider HTTP calls, so one process
holds ``concurrency`` calls in flight over one pooled httpx client and one database pool.
"""

from __future__ import annotations

import socket

import redis

from broker.config.settings import Settings
from broker.errors import ConfigError
from broker.pipelines import BatchedPipelines
from broker.store import Database
from schedulers.budgets import BudgetLimits, Budgets
from workers.answers import AnswerSharing
from workers.celery_app import create_celery_app
from workers.execution import Executor
from workers.recorder import Recorder
from workers.tasks import register_tasks


def run_worker(settings: Settings, provider_name: str, concurrency: int | None = None) -> None:
    config = settings.config
    known = [p.name for p in config.providers]
    if provider_name not in known:
        raise ConfigError(
            str(settings.config_path or "broker.toml"),
            "providers",
            f"no provider {provider_name!r} (known: {', '.join(known)})",
        )
    provider = config.provider(provider_name)
    threads = concurrency or provider.concurrency
    db = Database(settings.database_url_or_default, pool_size=settings.db_pool_size)
    client = redis.Redis.from_url(settings.redis_url, max_connections=threads + 8)
    recorder = Recorder(db)
    budgets = Budgets(client, db, config, BudgetLimits(db, config))
    pipelines = BatchedPipelines(client)  # the pool's threads' Redis writes, batched
    sharing = AnswerSharing(client, db, config, pipelines)
    executor = Executor(
        config, recorder, client, budgets, sharing, calls_in_flight=threads, pipelines=pipelines
    )
    app = create_celery_app(settings)
    register_tasks(app, executor)
    try:
        app.worker_main(
            [
                "worker",
                f"--queues={provider.queue}",
                "--pool=threads",
                f"--concurrency={threads}",
                f"--hostname={provider.name}@{socket.gethostname()}",
                f"--loglevel={settings.log_level}",
                "--without-mingle",
                "--without-gossip",
                *(["--task-events"] if settings.task_events is True else []),
            ]
        )
    finally:
        executor.close()
        pipelines.close()
        recorder.close()
        client.close()
        db.dispose()
