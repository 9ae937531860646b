"""Putting Redis back in line with the database: after Redis lost its data, and after workers died.

Three jobs, all run by the leading scheduler:

- :meth:`Recovery.ensure_epoch`, before every round: if the epoch marker is missing, Redis lost
  its data (or this is a first start). Before anything is dispatched, requests ``dispatched``
  but not yet started are queued again (their Celery tasks were in Redis; a new attempt number
  makes any copy a worker still holds stale), every request the database has ``queued`` or
  ``waiting_budget`` is put back on its team's queue (unless an entry for it is there already),
  and every request running gets its worst-case budget reservation back (its in-flight slot is
  not restored: the pool may briefly take a few more than its concurrency). Budget
  spend itself is reloaded from the ledger key by key (:mod:`schedulers.budgets`).
- :meth:`Recovery.reconcile_queues`, at start and every few seconds: a team whose queues hold
  fewer entries than the database has requests queued lost some (a process died between
  requeueing a request in the database and pushing it); the missing ones are pushed back. An
  entry twice is harmless: only one dispatch of a queued request wins. And
  :meth:`Recovery.requeue_lost_tasks`: a request dispatched a while ago, not started, whose
  Celery message is nowhere in Redis, lost its task; it is queued again.
- :meth:`Recovery.reap`, every few seconds: an attempt dispatched longer ago than
  ``reap_after_s`` died with its worker (an attempt is bounded by its tries' timeouts). Its
  reservation and slot are released, an alert fires, and the request goes back to the head of
  its queue, or fails with ``worker_lost`` once ``max_attempts`` dispatches have failed. If the
  lost attempt was in fact alive and finishes later, it records nothing: it is no longer the
  current attempt.
  Reservations left with no attempt in flight (a scheduler that died between reserving and
  dispatching) are released too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import timedelta

import redis
from sqlalchemy import func, select, update

from broker import queues, redis_keys
from broker.cache.flights import Flights, flight_ttl_s
from broker.config.broker_toml import BrokerConfig
from broker.queues import QueueEntry
from broker.states import Priority, RequestStatus
from broker.store import Database, Job, Request, transitions
from broker.store.models import utcnow
from schedulers.alerts import Alerts
from schedulers.budgets import Budgets, cost_bound
from workers.celery_app import attempts_in_redis

log = logging.getLogger(__name__)

_IN_FLIGHT = (RequestStatus.DISPATCHED, RequestStatus.RUNNING)
_CHUNK = 5_000
#: A dispatch not started after this long, with no task in Redis, lost its task.
LOST_TASK_AFTER_S = 30.0


def entry_of(row: Request, feature: str | None = None) -> QueueEntry:
    """The queue entry of a request row, as submission made it."""
    return QueueEntry(
        row.id,
        row.model,
        queues.payload_input_bound(row.payload),
        row.payload.get("max_tokens", 0),  # an embedding request has no output tokens
        int(row.created_at.timestamp() * 1000),
        feature or row.feature,
        row.trace_id or "-",
        row.chain_index,
        row.cache or "-",
        row.route or "-",
    )


class Recovery:
    def __init__(
        self,
        client: redis.Redis,
        db: Database,
        config: BrokerConfig,
        budgets: Budgets,
        alerts: Alerts,
    ) -> None:
        self._redis = client
        self._db = db
        self._config = config
        self._budgets = budgets
        self._alerts = alerts
        scheduler = config.scheduler
        self.reap_after_s = scheduler.reap_after_s or config.longest_attempt_s() + 30
        self._max_attempts = scheduler.max_attempts
        self._flights = Flights(client, flight_ttl_s(config))

    # --- after Redis lost its data --------------------------------------------------------------

    def ensure_epoch(self) -> bool:
        """Rebuild what Redis should hold if its marker is gone; True if it rebuilt."""
        if self._redis.exists(redis_keys.epoch()):
            return False
        started = time.monotonic()
        self._requeue_dispatched()
        requeued = self._requeue_from_database()
        in_flight = self._restore_in_flight()
        self._redis.set(redis_keys.epoch(), str(time.time()))
        log.warning(
            "Redis had no epoch marker: rebuilt %d queue entries and %d in-flight reservations "
            "from the database in %.1f s",
            requeued,
            in_flight,
            time.monotonic() - started,
        )
        return True

    def _requeue_dispatched(self) -> int:
        with self._db.session() as session:
            rows = session.execute(
                select(Request.id, Request.attempts).where(
                    Request.status == RequestStatus.DISPATCHED
                )
            ).all()
        requeued = 0
        for row in rows:
            requeued += self._db.write(
                lambda s, row=row: transitions.requeue(
                    s, row.id, row.attempts, from_states=(RequestStatus.DISPATCHED,)
                )
            )
        if rows:
            log.warning("%d dispatched requests lost their tasks with Redis: requeued", requeued)
        return requeued

    def _present(self, team: str | None = None) -> set[str]:
        """Request ids already in the team queues or parked (of one team, or all)."""
        present: set[str] = set()
        if team is None:
            queue_keys = self._redis.scan_iter(
                match=f"{redis_keys.team_queue_prefix()}*", count=1000
            )
            parked_keys = [
                redis_keys.parked(t.decode())
                for t in self._redis.smembers(redis_keys.parked_teams())
            ]
        else:
            queue_keys = [redis_keys.team_queue(team, p) for p in Priority]
            parked_keys = [redis_keys.parked(team)]
        for key in queue_keys:
            present.update(raw.split(b" ", 1)[0].decode() for raw in self._lines(key))
        for key in parked_keys:  # "<priority> <entry>"
            present.update(raw.split(b" ", 2)[1].decode() for raw in self._lines(key))
        waiting = self._flights.waiting()  # waiting for an identical request's call
        for waiter_team, ids in waiting.items():
            if team is None or waiter_team == team:
                present.update(ids)
        return present

    def _lines(self, key: str) -> Iterator[bytes]:
        for start in range(0, self._redis.llen(key), _CHUNK):
            yield from self._redis.lrange(key, start, start + _CHUNK - 1)

    def _requeue_from_database(self) -> int:
        present = self._present()
        held = self._db.write(
            lambda s: (
                s.execute(
                    update(Request)
                    .where(Request.status == RequestStatus.WAITING_BUDGET)
                    .values(status=RequestStatus.QUEUED)
                ).rowcount
            )
        )
        if held:
            log.warning("%d held requests are queued again (the held lists were lost)", held)
        pushed = 0
        with self._db.session() as session:
            rows = session.execute(
                select(Request, Job.feature)
                .join(Job, Job.id == Request.job_id)
                .where(Request.status == RequestStatus.QUEUED)
                .order_by(Request.created_at, Request.seq)
                .execution_options(yield_per=_CHUNK)
            )
            batch: dict[tuple[str, Priority], list[tuple[Priority, QueueEntry]]] = {}
            for row, feature in rows:
                if row.id in present:
                    continue
                priority = Priority(row.priority)
                batch.setdefault((row.team_id, priority), []).append(
                    (priority, entry_of(row, feature))
                )
                pushed += 1
        for (team, _), entries in batch.items():
            queues.push(self._redis, team, entries)
        return pushed

    def _restore_in_flight(self) -> int:
        restored = 0
        with self._db.session() as session:
            rows = session.scalars(
                select(Request).where(Request.status == RequestStatus.RUNNING)
            ).all()
        requests = []
        for row in rows:
            entry = entry_of(row)
            # The model it was sent to is not recorded until it finishes: reserve the dearest
            # of its chain, which covers whichever it runs on.
            chain = self._config.model(row.model).chain if self._config.has_model(row.model) else []
            if not chain:
                continue
            amount = max(cost_bound(self._config, m, entry) for m in chain)
            scopes = self._budgets.scopes(row.team_id, entry.feature, entry.trace)
            if scopes:
                # Load spend from the ledger first, so the reservation lands on a loaded key.
                self._budgets.snapshot(scopes)
                requests.append((row.id, amount, scopes))
        if requests:
            restored = sum(self._budgets.reserve(requests, enforce=False))
        return restored

    # --- requests queued in the database but not in Redis --------------------------------------

    def reconcile_queues(self) -> int:
        """Push back requests the database has queued that no team queue holds and none is
        parked; returns how many.

        Cheap when nothing is missing: one grouped count and a few LLENs. A team's queues may
        hold more entries than it has queued requests (entries of cancelled or expired requests
        wait to be skipped), never fewer unless some were lost. Such leftovers can hide a lost
        entry until the scheduler has skipped past them: recovery is eventual, not immediate.
        """
        with self._db.session() as session:
            counts = dict(
                session.execute(
                    select(Request.team_id, func.count())
                    .where(Request.status == RequestStatus.QUEUED)
                    .group_by(Request.team_id)
                ).all()
            )
        if not counts:
            return 0
        teams = sorted(counts)
        with self._redis.pipeline(transaction=False) as pipe:
            for team in teams:
                for priority in Priority:
                    pipe.llen(redis_keys.team_queue(team, priority))
                pipe.llen(redis_keys.parked(team))
            lengths = pipe.execute()
        n = len(Priority) + 1
        waiting = self._flights.waiting()
        short = [
            t
            for i, t in enumerate(teams)
            if sum(lengths[i * n : (i + 1) * n]) + len(waiting.get(t, ())) < counts[t]
        ]
        return sum(self._push_missing(team) for team in short)

    def _push_missing(self, team: str) -> int:
        present = self._present(team)
        with self._db.session() as session:
            rows = session.execute(
                select(Request, Job.feature)
                .join(Job, Job.id == Request.job_id)
                .where(Request.team_id == team, Request.status == RequestStatus.QUEUED)
                .order_by(Request.created_at, Request.seq)
            ).all()
        missing: dict[Priority, list[QueueEntry]] = {}
        for row, feature in rows:
            if row.id not in present:
                missing.setdefault(Priority(row.priority), []).append(entry_of(row, feature))
        for priority, entries in missing.items():
            queues.push_front(self._redis, team, priority, entries)
        pushed = sum(len(entries) for entries in missing.values())
        if pushed:
            log.warning("team %s: %d queued requests were missing from Redis; pushed", team, pushed)
        return pushed

    # --- dispatches whose task is gone ------------------------------------------------------

    def requeue_lost_tasks(self, older_than_s: float = LOST_TASK_AFTER_S) -> int:
        """Queue again what has been ``dispatched`` (not started) for ``older_than_s`` while no
        Celery message for its attempt is in Redis: the task was lost (a Redis that failed over
        to a replica without it, say). Returns how many. A worker that still delivers the old
        message finds its attempt no longer current and does nothing, so nothing runs twice.
        """
        cutoff = utcnow() - timedelta(seconds=older_than_s)
        with self._db.session() as session:
            rows = session.execute(
                select(Request, Job.feature)
                .join(Job, Job.id == Request.job_id)
                .where(Request.status == RequestStatus.DISPATCHED, Request.dispatched_at < cutoff)
                .limit(_CHUNK)
            ).all()
        if not rows:
            return 0
        present = attempts_in_redis(self._redis, [p.queue for p in self._config.providers])
        requeued = 0
        for row, feature in rows:
            if (row.id, row.attempts) in present:
                continue
            requeued += self._db.write(
                lambda s, row=row: transitions.requeue(
                    s, row.id, row.attempts, from_states=(RequestStatus.DISPATCHED,)
                )
            )
            self._release(row.id)
            queues.push_front(
                self._redis, row.team_id, Priority(row.priority), [entry_of(row, feature)]
            )
        if requeued:
            log.warning("%d dispatched requests had no task in Redis: queued again", requeued)
        return requeued

    def _release(self, request_id: str) -> None:
        """Give back a dead attempt's budget reservation and in-flight slot."""
        with self._redis.pipeline(transaction=False) as pipe:
            self._budgets.release(pipe, request_id)
            for provider in self._config.providers:
                pipe.zrem(redis_keys.in_flight(provider.name), request_id)
            pipe.execute()

    # --- attempts that died with their worker -----------------------------------------------

    def reap(self) -> int:
        """Requeue (or fail) attempts that outlived any call; returns how many."""
        cutoff = utcnow() - timedelta(seconds=self.reap_after_s)
        with self._db.session() as session:
            stale = session.execute(
                select(Request, Job.feature)
                .join(Job, Job.id == Request.job_id)
                .where(Request.status.in_(_IN_FLIGHT), Request.dispatched_at < cutoff)
                .limit(_CHUNK)
            ).all()
        reaped = 0
        for row, feature in stale:
            reaped += self._reap_one(row, feature)
        self._release_orphans()
        return reaped

    def _reap_one(self, row: Request, feature: str) -> int:
        entry = entry_of(row, feature)
        give_up = row.failures + 1 >= self._max_attempts
        message = (
            f"the worker running attempt {row.attempts} stopped answering (lost after "
            f"{self.reap_after_s:.0f} s)"
        )
        if give_up:
            changed = self._db.write(
                lambda s: transitions.fail_attempt(s, row.id, row.attempts, "worker_lost", message)
            )
        else:
            changed = self._db.write(
                lambda s: transitions.requeue(
                    s, row.id, row.attempts, from_states=_IN_FLIGHT, failed=True
                )
            )
        if not changed:
            return 0  # it finished meanwhile
        self._release(row.id)
        if not give_up:
            queues.push_front(self._redis, row.team_id, Priority(row.priority), [entry])
        self._alerts.fire(
            row.team_id,
            "attempt_lost",
            f"request {row.id}: {message}; "
            + ("failed after the last attempt" if give_up else "queued again"),
            request_id=row.id,
            attempt=row.attempts,
        )
        return 1

    def _release_orphans(self) -> None:
        cutoff = time.time() - self.reap_after_s
        ids = [
            r.decode() for r in self._redis.zrangebyscore(redis_keys.reservation_times(), 0, cutoff)
        ]
        if not ids:
            return
        with self._db.session() as session:
            live = set(
                session.scalars(
                    select(Request.id).where(Request.id.in_(ids), Request.status.in_(_IN_FLIGHT))
                )
            )
        orphans = [rid for rid in ids if rid not in live]
        with self._redis.pipeline(transaction=False) as pipe:
            for rid in orphans:
                self._budgets.release(pipe, rid)
            pipe.execute()
        if orphans:
            log.warning("released %d budget reservations with no attempt in flight", len(orphans))
