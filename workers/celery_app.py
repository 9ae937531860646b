"""The Celery application shared by the scheduler (which sends) and the worker pools.

Celery only moves work: one queue per provider, filled by the scheduler no further than the
pools can start soon. Priority and fairness are decided in the scheduler, so Celery's emulated
Redis priorities are not used. Results go to the result store, never to a Celery backend.
"""

from __future__ import annotations

from celery import Celery

from broker.settings import Settings

EXECUTE = "workers.execute"

# Longer than any provider call can take, so Redis does not redeliver a task still running.
VISIBILITY_TIMEOUT_S = 3600


def create_celery_app(settings: Settings) -> Celery:
    app = Celery("inference-broker", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        worker_hijack_root_logger=False,
        task_default_queue="broker.default",
    )
    return app
