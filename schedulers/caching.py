"""The response cache in the scheduling round: answer what is known, let repeats wait.

Submission answers what the cache already holds (:mod:`broker.submission`); this is the second
look, just before dispatch, for what was not known then. Each round, before picking:

1. :meth:`CacheCheck.look` reads, in two round trips, the flights up
   (:mod:`broker.cache.flights`) and then the cached answers for the peeked entries that may
   read the cache.
2. While picking, :meth:`Known.decide` says, for the request at a team's head: ``hit`` (its
   answer is cached: it completes free, taking no slot, no rate limit and no reservation),
   ``wait`` (an identical request is in flight, or was picked this round: it waits for that
   answer) or ``go`` (it is picked as usual, and leads its key's flight if it may store).
3. :meth:`CacheCheck.before_dispatch` starts the flights and parks the waiters *before* the
   tasks are sent, so an attempt that finishes at once still finds its waiters;
   :meth:`CacheCheck.after_dispatch` releases the flights of picks that were not sent and
   records the hits in the database.

Hits and waiters consume no fair-share service. The cache failing (Redis errors while
looking) means nothing is known: every request takes the plain path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import redis
from sqlalchemy.exc import SQLAlchemyError

from broker.cache.exact import CachedAnswer, ExactCache
from broker.cache.flights import Flights, Waiter, flight_ttl_s
from broker.config.broker_toml import BrokerConfig
from broker.ids import job_of_request
from broker.queues import QueueEntry
from broker.store import Database
from broker.store.cache_hits import Hit, complete_queued
from broker.telemetry import metrics

log = logging.getLogger(__name__)


@dataclass
class Known:
    """What one round knows of the cache, and what it decided."""

    answers: dict[str, CachedAnswer] = field(default_factory=dict)
    flying: dict[str, str] = field(default_factory=dict)  # key → the request leading it
    hits: list[Hit] = field(default_factory=list)
    waiting: list[tuple[str, Waiter]] = field(default_factory=list)
    leads: dict[str, str] = field(default_factory=dict)  # key → request id

    def decide(self, team: str, priority, entry: QueueEntry) -> Literal["hit", "wait", "go"]:
        key = entry.cache_key
        if key is None or not entry.cache_read:
            return "go"
        answer = self.answers.get(key)
        if answer is not None:
            job_id = job_of_request(entry.request_id)
            self.hits.append(
                Hit(entry.request_id, job_id, "exact", answer, team, entry.feature, entry.trace)
            )
            return "hit"
        leader = self.flying.get(key)
        if leader is not None and leader != entry.request_id:  # never behind its own flight
            self.waiting.append((key, (team, priority, entry)))
            return "wait"
        return "go"

    def picked(self, entry: QueueEntry) -> None:
        """``entry`` was picked: it leads its key's flight, if it may share its answer."""
        key = entry.cache_key
        if key is not None and entry.cache_read and entry.cache_store:
            self.leads[key] = entry.request_id
            self.flying[key] = entry.request_id


class CacheCheck:
    def __init__(self, client: redis.Redis, db: Database, config: BrokerConfig) -> None:
        self._cache = ExactCache(client)
        self._flights = Flights(client, flight_ttl_s(config))
        self._redis = client
        self._db = db

    def look(self, readers: Iterable[QueueEntry]) -> Known:
        """What the cache knows of the peeked entries that may read it."""
        keys = {entry.cache_key for entry in readers if entry.cache_key}
        if not keys:
            return Known()
        try:
            # Flights first: a landing stores the answer and ends the flight in one
            # transaction, so one that lands between the two reads is seen flying, then
            # answered (a hit). The other way round it could be seen neither answered nor
            # flying, and a repeat would be called again.
            flying = self._flights.leaders(keys)
            return Known(self._cache.get_many(keys), flying)
        except redis.RedisError as exc:
            log.warning("single-flight unavailable, taking the plain path: %s", exc)
            return Known()

    def before_dispatch(self, known: Known) -> None:
        """Start this round's flights and park its waiters, in one pipeline."""
        if not known.leads and not known.waiting:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            self._flights.start(pipe, sorted(known.leads.items()))
            self._flights.wait(pipe, known.waiting)
            pipe.execute()

    def after_dispatch(self, known: Known, sent_ids: set[str]) -> list[Hit]:
        """Release the flights of picks not sent; record the hits. Returns the hits recorded."""
        for key, request_id in known.leads.items():
            if request_id not in sent_ids:
                self._flights.release(key, leader=request_id)
        if not known.hits:
            return []
        try:
            recorded = self._db.write(lambda session: complete_queued(session, known.hits))
        except SQLAlchemyError as exc:  # still queued in the database: reconciliation requeues
            log.warning("%d cache hits not recorded: %s", len(known.hits), exc)
            return []
        metrics.count_hits(
            self._redis, ((h.kind, h.answer.model, h.answer.cost_micros) for h in recorded)
        )
        return recorded

    def sweep(self) -> int:
        return self._flights.sweep()

    def waiting(self) -> dict[str, set[str]]:
        return self._flights.waiting()
