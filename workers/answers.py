"""After an attempt: keep its answer in the response cache and share it with the requests that
waited for it (single-flight, :mod:`broker.cache.flights`), or let them go if it failed.

Never a point of failure: a Redis or database error here is logged and the attempt's own
outcome stands. Waiters that could not be completed are still ``queued`` in the database, so
the queue reconciliation puts them back and they are answered from the cache or called.
"""

from __future__ import annotations

import logging
import time

import redis
from sqlalchemy.exc import SQLAlchemyError

from broker.cache.exact import CachedAnswer, put_on
from broker.cache.flights import Flights, flight_ttl_s, waiters_of
from broker.cache.semantic.serving import SemanticCache
from broker.config.broker_toml import BrokerConfig
from broker.ids import job_of_request
from broker.pipelines import Pipelines
from broker.store import Database
from broker.store.cache_hits import Hit, complete_queued
from broker.store.transitions import Claimed, Outcome
from broker.telemetry import metrics
from schedulers.ticket import Ticket

log = logging.getLogger(__name__)


class AnswerSharing:
    def __init__(
        self,
        client: redis.Redis,
        db: Database,
        config: BrokerConfig,
        pipelines: Pipelines | None = None,
    ) -> None:
        self._pipelines = pipelines or Pipelines(client)
        self._flights = Flights(client, flight_ttl_s(config))
        self._db = db
        self._redis = client
        self._config = config
        self._semantic = SemanticCache(client)  # learns only: the API embedded the turn

    def succeeded(self, ticket: Ticket, claimed: Claimed, outcome: Outcome) -> int:
        """Keep the answer (if the request may store it) and complete its waiters from it;
        returns how many waiters it answered."""
        entry = ticket.queue_entry
        key = entry.cache_key
        if key is None or outcome.output is None:
            return 0
        answer = CachedAnswer(
            key=key,
            source_request_id=claimed.request_id,
            model=outcome.model,
            provider=outcome.provider,
            output=outcome.output,
            finish_reason=outcome.finish_reason,
            stop_sequence=outcome.stop_sequence,
            input_tokens=outcome.input_tokens,
            cached_input_tokens=outcome.cached_input_tokens,
            output_tokens=outcome.output_tokens,
            cost_micros=outcome.cost_micros,
            stored_at=time.time(),
        )

        def fill(
            pipe: redis.client.Pipeline,
        ) -> None:  # one transaction: answer kept, flight landed
            self._flights.land_on(pipe, key)  # first: its first reply is the waiters
            if entry.cache_store:
                put_on(pipe, answer, entry.cache_ttl_s, claimed.team_id, claimed.feature)

        try:
            waiters = waiters_of(self._pipelines.run(fill, transaction=True)[0])
            if entry.cache_store:
                policy = self._config.cache.policy(claimed.team_id, claimed.feature)
                if policy.mode == "semantic":
                    self._semantic.learn(claimed.request_id)
        except redis.RedisError as exc:
            log.warning("cache and single-flight for %s unavailable: %s", claimed.request_id, exc)
            return 0
        if not waiters:
            return 0
        hits = [
            Hit(
                e.request_id,
                job_of_request(e.request_id),
                "single_flight",
                answer,
                team,
                e.feature,
                e.trace,
            )
            for team, _, e in waiters
        ]
        try:
            recorded = self._db.write(lambda session: complete_queued(session, hits))
        except SQLAlchemyError as exc:
            log.warning(
                "%d requests waiting for %s stay queued (%s)", len(hits), claimed.request_id, exc
            )
            return 0
        metrics.count_hits(
            self._redis, ((h.kind, h.answer.model, h.answer.cost_micros) for h in recorded)
        )
        return len(recorded)

    def failed(self, ticket: Ticket) -> int:
        """The attempt ended without an answer (failed, or handed back): if it was its key's
        flight, the waiters go back to their queues; returns how many."""
        entry = ticket.queue_entry
        if entry.cache_key is None:
            return 0
        try:
            return self._flights.release(entry.cache_key, leader=ticket.request_id)
        except redis.RedisError as exc:  # the sweep frees them once the flight expires
            log.warning("single-flight for %s unavailable: %s", ticket.request_id, exc)
            return 0
