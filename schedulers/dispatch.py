"""Handing picked requests to the provider pools, so that a crash at any point loses nothing.

Order matters:

1. the round's tickets go into a journal in Redis;
2. the database records the dispatch (only requests still queued win, so a cancelled request is
   never sent, and a request is dispatched at most once however many schedulers run);
3. in-flight slots and rate-limit budget are taken;
4. the tasks are sent, several tickets to a message per provider (:func:`chunks`);
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
from kombu import Exchange, Queue
from sqlalchemy import select

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.pipelines import execute_unchecked
from broker.queues import QueueEntry
from broker.states import Priority, RequestStatus
from broker.store import Database, Request, transitions
from broker.telemetry import metrics
from schedulers.budgets import Budgets, Scope
from schedulers.capacity import InFlight
from schedulers.ratelimits import Bucket, RateLimits
from schedulers.ticket import Ticket
from workers.celery_app import EXECUTE, EXECUTE_MANY

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Pick:
    team: str
    priority: Priority
    entry: QueueEntry
    provider: str
    model: str
    service: float
    cost: int = 0  # the worst case reserved against the budgets, micro-dollars
    scopes: tuple[Scope, ...] = ()

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
        budgets: Budgets | None = None,
    ) -> None:
        self._budgets = budgets
        # Straight to each provider's list through the default exchange: no binding to look up
        # in Redis per message, and none to lose if Redis loses its data.
        self._queues = {
            p.name: Queue(p.queue, Exchange(""), routing_key=p.queue, no_declare=True)
            for p in config.providers
        }
        self._per_message = {p.name: p.tickets_per_message for p in config.providers}
        self._db = db
        self._redis = client
        self._celery = celery_app
        self._in_flight = in_flight
        self._limits = limits

    def dispatch(self, picks: Sequence[Pick]) -> tuple[list[Pick], list[Pick]]:
        """Send what is still queued and fits its budgets.

        Returns the picks sent and the picks whose budget reservation was refused after all
        (only possible when a limit was lowered meanwhile): those go back to their queue.
        """
        if not picks:
            return [], []
        picks, bounced = self._reserve(picks)
        if not picks:
            return [], bounced
        journal = {p.entry.request_id: p.ticket(attempt=0).encode() for p in picks}
        self._redis.hset(redis_keys.dispatch_journal(), mapping=journal)
        ids = [p.entry.request_id for p in picks]
        won = self._db.write(lambda s: transitions.mark_dispatched(s, ids))
        attempts = {d.request_id: d.attempt for d in won}
        sent = [p for p in picks if p.entry.request_id in attempts]
        if len(sent) < len(picks):
            lost = [p for p in picks if p.entry.request_id not in attempts]
            log.debug("%d picked requests were no longer queued", len(lost))
            self._release([p for p in lost if p.scopes])
        tickets = [p.ticket(attempts[p.entry.request_id]) for p in sent]
        hold(self._redis, self._in_flight, self._limits, sent)
        self._send(tickets)
        return sent, bounced

    def _reserve(self, picks: Sequence[Pick]) -> tuple[list[Pick], list[Pick]]:
        budgeted = [p for p in picks if p.scopes]
        if not budgeted or self._budgets is None:
            return list(picks), []
        granted = self._budgets.reserve([(p.entry.request_id, p.cost, p.scopes) for p in budgeted])
        refused = {p.entry.request_id for p, ok in zip(budgeted, granted) if not ok}
        if refused:
            log.warning("%d budget reservations refused at dispatch", len(refused))
        return (
            [p for p in picks if p.entry.request_id not in refused],
            [p for p in picks if p.entry.request_id in refused],
        )

    def _release(self, picks: Sequence[Pick]) -> None:
        if picks and self._budgets is not None:
            with self._redis.pipeline(transaction=False) as pipe:
                for pick in picks:
                    self._budgets.release(pipe, pick.entry.request_id)
                pipe.execute()

    def _send(self, tickets: Sequence[Ticket]) -> None:
        """One message per provider and ``tickets_per_message`` tickets, in pick order; a lone
        ticket goes as ``execute`` (what Flower shows as one request). All in one round trip."""
        by_provider: dict[str, list[Ticket]] = {}
        for ticket in tickets:
            by_provider.setdefault(ticket.provider, []).append(ticket)
        # producer.batch(): kombu buffers the round's messages and sends them in one Redis
        # pipeline, instead of a round trip (and a new redis-py client) per message.
        with self._celery.producer_or_acquire() as producer, producer.batch():
            for provider, group in by_provider.items():
                for chunk in chunks(group, self._per_message[provider]):
                    if len(chunk) == 1:
                        kwargs = chunk[0].as_kwargs()
                        task, shown = EXECUTE, repr(kwargs)
                    else:
                        kwargs = {"tickets": [t.as_kwargs() for t in chunk]}
                        task = EXECUTE_MANY
                        shown = repr({"tickets": [f"{t.request_id}/{t.attempt}" for t in chunk]})
                    self._celery.send_task(
                        task,
                        kwargs=kwargs,
                        queue=self._queues[provider],
                        producer=producer,
                        # What Flower shows; given, it spares Celery a saferepr() per message,
                        # which was a fifth of the scheduler's time.
                        argsrepr="()",
                        kwargsrepr=shown,
                    )

    def recover(self) -> int:
        """A new leader's first step: resend tasks a dead leader recorded but may not have sent.

        Returns how many tasks were sent again.
        """
        journal = self._redis.hgetall(redis_keys.dispatch_journal())
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
        self._redis.delete(redis_keys.dispatch_journal())
        return len(resend)

    def fail(self, failures: Sequence[tuple[QueueEntry, str, str]]) -> None:
        """Requests that cannot be dispatched at all fail with (code, message): a model gone
        from the catalog, a budget exceeded under the ``reject`` policy."""
        if failures:
            triples = [(entry.request_id, code, message) for entry, code, message in failures]
            self._db.write(lambda s: transitions.fail_queued(s, triples))


def chunks(tickets: Sequence[Ticket], most: int) -> list[Sequence[Ticket]]:
    """``tickets`` cut into the fewest messages of at most ``most``, evenly sized (17 with a
    most of 16 go as 9 and 8, not 16 and 1, so two worker processes share them)."""
    count = -(-len(tickets) // most)
    size = -(-len(tickets) // count) if count else 0
    return [tickets[i : i + size] for i in range(0, len(tickets), size)] if size else []


def hold(
    client: redis.Redis, in_flight: InFlight, limits: RateLimits, picks: Sequence[Pick]
) -> None:
    """Take the in-flight slots and the rate-limit budget of what is being sent (and count the
    dispatches for ``/metrics``)."""
    by_provider: dict[str, list[str]] = {}
    taken: dict[Bucket, float] = {}
    for pick in picks:
        by_provider.setdefault(pick.provider, []).append(pick.entry.request_id)
        buckets = limits.buckets(pick.provider, pick.model, pick.team, pick.entry.feature)
        for bucket in buckets:
            taken[bucket] = taken.get(bucket, 0.0) + bucket.amount(pick.entry.est_tokens)
    with client.pipeline(transaction=False) as pipe:
        for provider, request_ids in by_provider.items():
            in_flight.add(pipe, provider, request_ids)
        limits.take(pipe, taken)
        metrics.count_dispatches(pipe, ((p.provider, p.model) for p in picks))
        execute_unchecked(pipe)
