"""Handing picked requests to the provider pools, so that a crash at any point loses nothing.

Order matters:

1. the round's tickets go into a journal in Redis;
2. the database records the dispatch (only requests still queued win, so a cancelled request is
   never sent, and a request is dispatched at most once however many schedulers run);
3. in-flight slots and rate-limit budget are taken;
4. the tasks are sent;
5. (the loop) the entries are popped from the team queues and the journal is cleared.

A scheduler killed between 2 and 4 leaves requests dispatched in the database with no task.
The next leader replays the journal (:meth:`Dispatcher.recover`): every journalled request still
``dispatched`` under its attempt gets its task (again). A task sent twice runs once: the worker
claims an attempt with a conditional update (dispatched → running) that only one wins.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

import redis
from celery import Celery
from sqlalchemy import select

from broker import keys
from broker.config import BrokerConfig
from broker.queues import QueueEntry
from broker.states import Priority, RequestStatus
from broker.store import Database, Request, transitions
from schedulers.capacity import InFlight
from schedulers.ratelimits import Bucket, RateLimits
from schedulers.ticket import Ticket
from workers.celery_app import EXECUTE

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pick:
    team: str
    priority: Priority
    entry: QueueEntry
    provider: str
    model: str
    service: float

    def ticket(self, attempt: int) -> Ticket:
        return Ticket(
            request_id=self.entry.request_id,
            attempt=attempt,
            team=self.team,
            priority=self.priority.value,
            provider=self.provider,
            model=self.model,
            entry=self.entry.encode(),
            service=self.service,
        )


class Dispatcher:
    def __init__(
        self,
        config: BrokerConfig,
        db: Database,
        client: redis.Redis,
        celery_app: Celery,
        in_flight: InFlight,
        limits: RateLimits,
    ) -> None:
        self._queues = {p.name: p.queue for p in config.providers}
        self._db = db
        self._redis = client
        self._celery = celery_app
        self._in_flight = in_flight
        self._limits = limits

    def dispatch(self, picks: Sequence[Pick]) -> list[Pick]:
        """Send what is still queued; returns the picks that were sent."""
        if not picks:
            return []
        journal = {p.entry.request_id: p.ticket(attempt=0).encode() for p in picks}
        self._redis.hset(keys.dispatch_journal(), mapping=journal)
        ids = [p.entry.request_id for p in picks]
        won = self._db.write(lambda s: transitions.mark_dispatched(s, ids))
        attempts = {d.request_id: d.attempt for d in won}
        sent = [p for p in picks if p.entry.request_id in attempts]
        if len(sent) < len(picks):
            log.debug("%d picked requests were no longer queued", len(picks) - len(sent))
        tickets = [p.ticket(attempts[p.entry.request_id]) for p in sent]
        hold(self._redis, self._in_flight, self._limits, sent)
        self._send(tickets)
        return sent

    def _send(self, tickets: Sequence[Ticket]) -> None:
        with self._celery.producer_or_acquire() as producer:
            for ticket in tickets:
                kwargs = ticket.as_kwargs()
                self._celery.send_task(
                    EXECUTE,
                    kwargs=kwargs,
                    queue=self._queues[ticket.provider],
                    producer=producer,
                    # What Flower shows; given, it spares Celery a saferepr() per message,
                    # which was a fifth of the scheduler's time.
                    argsrepr="()",
                    kwargsrepr=repr(kwargs),
                )

    def recover(self) -> int:
        """A new leader's first step: resend tasks a dead leader recorded but may not have sent.

        Returns how many tasks were sent again.
        """
        journal = self._redis.hgetall(keys.dispatch_journal())
        if not journal:
            return 0
        tickets = {rid.decode(): Ticket.decode(rid.decode(), raw) for rid, raw in journal.items()}
        with self._db.session() as session:
            rows = session.execute(
                select(Request.id, Request.attempts).where(
                    Request.id.in_(list(tickets)), Request.status == RequestStatus.DISPATCHED
                )
            ).all()
        resend = [replace(tickets[row.id], attempt=row.attempts) for row in rows]
        if resend:
            with self._redis.pipeline(transaction=False) as pipe:
                for t in resend:  # the slots again (idempotent); the dead leader took the budget
                    self._in_flight.add(pipe, t.provider, [t.request_id])
                pipe.execute()
            self._send(resend)
            log.warning("resent %d tasks a previous leader may not have sent", len(resend))
        self._redis.delete(keys.dispatch_journal())
        return len(resend)

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


def hold(
    client: redis.Redis, in_flight: InFlight, limits: RateLimits, picks: Sequence[Pick]
) -> None:
    """Take the in-flight slots and the rate-limit budget of what is being sent."""
    by_provider: dict[str, list[str]] = {}
    taken: dict[Bucket, float] = {}
    for pick in picks:
        by_provider.setdefault(pick.provider, []).append(pick.entry.request_id)
        for bucket in limits.buckets(pick.provider, pick.model):
            taken[bucket] = taken.get(bucket, 0.0) + bucket.amount(pick.entry.est_tokens)
    with client.pipeline(transaction=False) as pipe:
        for provider, request_ids in by_provider.items():
            in_flight.add(pipe, provider, request_ids)
        limits.take(pipe, taken)
        pipe.execute()
