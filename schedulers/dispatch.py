"""Handing picked requests to the provider pools.

Order matters: the database records the dispatch first (only requests still queued win, so a
cancelled request is never sent), then the in-flight slots are taken, then the tasks are sent.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from celery import Celery

from broker.queues import QueueEntry
from broker.store import Database, transitions
from schedulers.capacity import InFlight
from workers.celery_app import EXECUTE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pick:
    team: str
    entry: QueueEntry
    provider: str
    queue: str


class Dispatcher:
    def __init__(
        self, db: Database, client: redis.Redis, celery_app: Celery, in_flight: InFlight
    ) -> None:
        self._db = db
        self._redis = client
        self._celery = celery_app
        self._in_flight = in_flight

    def dispatch(self, picks: Sequence[Pick]) -> int:
        """Send what is still queued; returns how many tasks were sent."""
        if not picks:
            return 0
        ids = [p.entry.request_id for p in picks]
        won = self._db.write(lambda s: transitions.mark_dispatched(s, ids))
        attempts = {d.request_id: d.attempt for d in won}
        sent = [p for p in picks if p.entry.request_id in attempts]
        if len(sent) < len(picks):
            log.debug("%d picked requests were no longer queued", len(picks) - len(sent))
        by_provider: dict[str, list[str]] = {}
        for pick in sent:
            by_provider.setdefault(pick.provider, []).append(pick.entry.request_id)
        with self._redis.pipeline(transaction=False) as pipe:
            for provider, request_ids in by_provider.items():
                self._in_flight.add(pipe, provider, request_ids)
            pipe.execute()
        with self._celery.producer_or_acquire() as producer:
            for pick in sent:
                rid = pick.entry.request_id
                args = (rid, attempts[rid], pick.provider)
                self._celery.send_task(
                    EXECUTE,
                    args=args,
                    queue=pick.queue,
                    producer=producer,
                    # What Flower shows; given, it spares Celery a saferepr() per message,
                    # which was a fifth of the scheduler's time.
                    argsrepr=repr(args),
                    kwargsrepr="{}",
                )
        return len(sent)

    def fail_unroutable(self, entries: Sequence[QueueEntry]) -> None:
        """Requests whose model left the catalog since submission fail with that reason."""
        if not entries:
            return
        with self._db.session() as session:
            for entry in entries:
                transitions.fail_queued(
                    session,
                    entry.request_id,
                    code="unknown_model",
                    message=f"model {entry.model!r} is no longer in the catalog",
                )
