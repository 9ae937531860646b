"""The webhook outbox pass: the scheduler leader sends due deliveries to the webhooks worker.

Delivery rows are written with the state change they report (:mod:`broker.store.outbox`); this
pass, run by the leader's housekeeping every couple of seconds, leases the due ones and sends
one Celery task per delivery attempt to the ``webhooks`` queue, and marks deliveries older than
``[webhooks] max_age_s`` failed. The row is the record: if Redis, the scheduler or the webhooks
worker dies, the lease runs out and the next leader sends the delivery again; the task claims
its attempt by number, so a task sent twice POSTs once.
"""

from __future__ import annotations

import logging

from celery import Celery

from broker.config.broker_toml import BrokerConfig
from broker.store import Database, deliveries
from workers.webhooks import DELIVER_WEBHOOK, WEBHOOKS_QUEUE, lease_s

log = logging.getLogger(__name__)


class WebhookOutbox:
    def __init__(self, db: Database, celery: Celery, config: BrokerConfig) -> None:
        self._db = db
        self._celery = celery
        self._config = config

    def send_due(self) -> int:
        """Send every due delivery's next attempt; returns how many were sent."""
        max_age = self._config.webhooks.max_age_s
        expired = self._db.write(lambda s: deliveries.expire_old(s, max_age))
        if expired:
            log.warning("%d webhook deliveries failed: not delivered within %g s", expired, max_age)
        due = self._db.write(lambda s: deliveries.take_due(s, lease_s(self._config)))
        if not due:
            return 0
        with self._celery.producer_or_acquire() as producer:
            for item in due:
                self._celery.send_task(
                    DELIVER_WEBHOOK,
                    kwargs={"delivery_id": item.delivery_id, "attempt": item.attempt},
                    queue=WEBHOOKS_QUEUE,
                    producer=producer,
                )
        return len(due)
