"""Provider capacity: how many calls each pool has in flight, and what one round may still send.

In flight is a sorted set of request ids per provider, scored by dispatch time: the scheduler
adds on dispatch, the worker removes when the attempt ends. Removal is idempotent, and an entry
left behind by a worker that died is dropped once it is older than the provider's timeout, so
capacity cannot leak away. The cap is the pool's concurrency plus a small margin: Celery's
queues hold only what the pools can start soon, so decisions stay late.

:class:`Room` joins the free slots with the rate-limit buckets (:mod:`schedulers.ratelimits`)
and the circuit breakers (:mod:`workers.breakers`) for one round: the loop asks whether a request
fits, takes it, and commits what it took. An open breaker fits nothing; a half-open one fits as
many calls as it has probe permits left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable

import redis

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from schedulers.ratelimits import Bucket, RateLimits, model_scope, provider_scope


class InFlight:
    def __init__(self, client: redis.Redis, config: BrokerConfig, margin: int) -> None:
        self._redis = client
        self._limits = {p.name: p.concurrency + margin for p in config.providers}
        self._stale_after = {
            p.name: config.longest_attempt_s(p.name) + 60 for p in config.providers
        }

    def free_slots(self) -> dict[str, int]:
        """Slots each provider can take now (limit minus what is in flight), never negative."""
        now = time.time()
        names = list(self._limits)
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zremrangebyscore(
                    redis_keys.in_flight(name), "-inf", now - self._stale_after[name]
                )
                pipe.zcard(redis_keys.in_flight(name))
            counts = pipe.execute()[1::2]
        return {name: max(0, self._limits[name] - n) for name, n in zip(names, counts)}

    def add(self, pipe: redis.client.Pipeline, provider: str, request_ids: Iterable[str]) -> None:
        now = time.time()
        mapping = {rid: now for rid in request_ids}
        if mapping:
            pipe.zadd(redis_keys.in_flight(provider), mapping)


def release(pipe: redis.client.Pipeline, provider: str, request_id: str) -> None:
    """Queue freeing an attempt's slot and waking the scheduler on ``pipe``."""
    pipe.zrem(redis_keys.in_flight(provider), request_id)
    pipe.lpush(redis_keys.scheduler_wake(), "done")
    pipe.ltrim(redis_keys.scheduler_wake(), 0, 0)


class Room:
    """What each provider can still take this round: free slots and rate-limit budget."""

    def __init__(
        self,
        in_flight: InFlight,
        limits: RateLimits,
        breakers: Callable[[], dict[str, int | None]] | None = None,
    ) -> None:
        self._limits = limits
        self.slots = in_flight.free_slots()
        self._levels: dict[str, float] = {}
        self._blocked: set[str] = set()
        #: Breaker scope → calls it may still take this round (absent: closed, no limit).
        self._permits: dict[str, int] = {}
        #: Half-open breaker scope → probes this round picked (the loop spends the permits).
        self.probes: dict[str, int] = {}
        self.taken: dict[Bucket, float] = {}
        if any(self.slots.values()):
            self._levels, self._blocked = limits.state()
            if breakers is not None:
                self._permits = {s: n for s, n in breakers().items() if n is not None}
        #: Breaker scopes refusing every call as the round starts (open, or out of probes).
        self.refusing = frozenset(s for s, n in self._permits.items() if n == 0)

    def healthy(self, provider: str, model: str) -> bool:
        """Whether the breakers let a call to ``model`` on ``provider`` through now."""
        permits = self._permits
        return (
            permits.get(provider_scope(provider), 1) > 0 and permits.get(model_scope(model), 1) > 0
        )

    def window(self) -> int:
        """An upper bound on what this round can dispatch (how far to peek into queues)."""
        total = 0
        for provider, slots in self.slots.items():
            scope = provider_scope(provider)
            if slots <= 0 or scope in self._blocked:
                continue
            slots = min(slots, self._permits.get(scope, slots))
            for bucket in self._limits.provider_buckets(provider):
                if not bucket.tokens:
                    slots = min(slots, max(0, math.floor(self._levels[bucket.key])))
            total += slots
        return total

    def fits(
        self,
        provider: str,
        model: str,
        tokens: int,
        team: str | None = None,
        feature: str | None = None,
    ) -> bool:
        """Whether a request has a slot and rate budget on ``provider``, and within its team's
        (and feature's) runaway guard when given."""
        if self.slots.get(provider, 0) <= 0 or not self.healthy(provider, model):
            return False
        if provider_scope(provider) in self._blocked or model_scope(model) in self._blocked:
            return False
        for bucket in self._limits.buckets(provider, model, team, feature):
            # A request larger than a whole bucket goes when the bucket is full.
            if self._levels[bucket.key] < min(bucket.amount(tokens), bucket.capacity):
                return False
        return True

    def take(
        self,
        provider: str,
        model: str,
        tokens: int,
        team: str | None = None,
        feature: str | None = None,
    ) -> None:
        self.slots[provider] -= 1
        for scope in (provider_scope(provider), model_scope(model)):
            if scope in self._permits:
                self._permits[scope] -= 1
                self.probes[scope] = self.probes.get(scope, 0) + 1
        for bucket in self._limits.buckets(provider, model, team, feature):
            amount = bucket.amount(tokens)
            self._levels[bucket.key] -= amount
            self.taken[bucket] = self.taken.get(bucket, 0.0) + amount

    def provider_full(self, provider: str) -> bool:
        return self.slots.get(provider, 0) <= 0
