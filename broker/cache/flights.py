"""Single-flight: identical cacheable requests queued or in flight together call a provider once.

The scheduler, picking a request whose cache key no answer holds yet, makes it the key's
*flight* (``ib:flight:<key>`` = its request id, with a TTL); a request with the same key picked
while the flight is up (in the same round, or any later one, from any batch, team of the same
scope or interactive caller) *waits*: its queue entry moves to the key's waiter list and the
request stays ``queued`` in the database, reserving nothing.

When the flight's attempt succeeds, the worker keeps the answer and *lands* the flight: the
waiters are popped in one transaction and completed from the answer as single-flight hits.
When it fails, or goes back to its queue (a 429, a fallback), the flight is *released*: the
waiters go back to the head of their queues, the first of them picked becomes the next flight.
A flight lost with its worker expires; :meth:`Flights.sweep` (every scheduler round's
housekeeping) puts the waiters of an expired flight back. Nothing waits forever, nothing is
lost: a waiter is still ``queued`` in the database, so cancelling it works as for any queued
request, the queue reconciliation counts it as present (:meth:`waiting_ids`), and the rebuild
after Redis lost its data queues it again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import redis

from broker import queues, redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.queues import QueueEntry
from broker.states import Priority

log = logging.getLogger(__name__)

Waiter = tuple[str, Priority, QueueEntry]  # team, priority, entry


def flight_ttl_s(config: BrokerConfig) -> float:
    """How long a flight holds its waiters: past the time after which its attempt is reaped
    as lost with its worker (the flight's request is then queued again, and may fly again)."""
    reap_after_s = config.scheduler.reap_after_s or config.longest_attempt_s() + 30
    return reap_after_s + 30


def _encode(team: str, priority: Priority, entry: QueueEntry) -> str:
    return f"{team} {queues.encode_set_aside(priority, entry)}"


def _decode(raw: bytes | str) -> Waiter:
    text = raw.decode() if isinstance(raw, bytes) else raw
    team, rest = text.split(" ", 1)
    priority, entry = queues.decode_set_aside(rest)
    return team, priority, entry


def waiters_of(raw: Sequence[bytes]) -> list[Waiter]:
    """The waiters in the reply of :meth:`Flights.land_on`'s first command."""
    return [_decode(line) for line in raw]


class Flights:
    def __init__(self, client: redis.Redis, ttl_s: float) -> None:
        self._redis = client
        self._ttl_ms = max(1000, int(ttl_s * 1000))

    def up(self, keys: Iterable[str]) -> set[str]:
        """The keys among ``keys`` with a flight up now."""
        wanted = sorted(set(keys))
        if not wanted:
            return set()
        with self._redis.pipeline(transaction=False) as pipe:
            for key in wanted:
                pipe.exists(redis_keys.flight(key))
            return {key for key, n in zip(wanted, pipe.execute()) if n}

    def leaders(self, keys: Iterable[str]) -> dict[str, str]:
        """Key → the request id leading its flight, for the keys among ``keys`` with one up."""
        wanted = sorted(set(keys))
        if not wanted:
            return {}
        values = self._redis.mget([redis_keys.flight(key) for key in wanted])
        return {key: v.decode() for key, v in zip(wanted, values) if v is not None}

    def start(self, pipe: redis.client.Pipeline, flights: Sequence[tuple[str, str]]) -> None:
        """Queue on ``pipe``: each (key, request id) becomes the key's flight."""
        for key, request_id in flights:
            pipe.set(redis_keys.flight(key), request_id, px=self._ttl_ms)

    def wait(self, pipe: redis.client.Pipeline, waiters: Sequence[tuple[str, Waiter]]) -> None:
        """Queue on ``pipe``: each (key, waiter) waits for the key's flight."""
        for key, (team, priority, entry) in waiters:
            pipe.rpush(redis_keys.flight_waiters(key), _encode(team, priority, entry))
            pipe.sadd(redis_keys.flights_waiting(), key)

    def land(self, key: str) -> list[Waiter]:
        """The flight of ``key`` ended with an answer now in the cache: its waiters, taken."""
        return self._end(key)

    def land_on(self, pipe: redis.client.Pipeline, key: str) -> None:
        """Queue :meth:`land` on ``pipe`` (a transaction): its first reply is the waiters,
        read by :func:`waiters_of`."""
        pipe.lrange(redis_keys.flight_waiters(key), 0, -1)
        pipe.delete(redis_keys.flight_waiters(key), redis_keys.flight(key))
        pipe.srem(redis_keys.flights_waiting(), key)

    def release(self, key: str, leader: str | None = None) -> int:
        """The flight of ``key`` ended without an answer: its waiters back at the head of their
        queues, in the order they came; returns how many. With ``leader``, only if that request
        is still the key's flight (a later flight of the same key is left alone)."""
        if leader is not None:
            current = self._redis.get(redis_keys.flight(key))
            if current is None or current.decode() != leader:
                return 0
        waiters = self._end(key)
        by_team: dict[str, list[tuple[Priority, QueueEntry]]] = {}
        for team, priority, entry in waiters:
            by_team.setdefault(team, []).append((priority, entry))
        for team, entries in by_team.items():
            queues.restore(self._redis, team, entries)
        return len(waiters)

    def _end(self, key: str) -> list[Waiter]:
        with self._redis.pipeline(transaction=True) as pipe:
            self.land_on(pipe, key)
            raw, *_ = pipe.execute()
        return waiters_of(raw)

    def sweep(self) -> int:
        """Put back the waiters of flights that expired (their leader's worker died, or Redis
        dropped the key); returns how many went back."""
        keys = [k.decode() for k in self._redis.smembers(redis_keys.flights_waiting())]
        lost = [k for k in keys if k not in self.up(keys)]
        back = sum(self.release(key) for key in lost)
        if back:
            log.warning("%d requests waited for flights that were lost: queued again", back)
        return back

    def waiting(self) -> dict[str, set[str]]:
        """Team → ids of its requests waiting for a flight."""
        found: dict[str, set[str]] = {}
        for key in self._redis.smembers(redis_keys.flights_waiting()):
            for raw in self._redis.lrange(redis_keys.flight_waiters(key.decode()), 0, -1):
                team, _, entry = _decode(raw)
                found.setdefault(team, set()).add(entry.request_id)
        return found
