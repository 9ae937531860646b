"""Provider capacity: how many calls each provider pool has in flight, shared through Redis.

In flight is a sorted set of request ids per provider, scored by dispatch time: the scheduler
adds on dispatch, the worker removes when the attempt ends. Removal is idempotent, and an entry
left behind by a worker that died is dropped once it is older than the provider's timeout, so
capacity cannot leak away. Rate limits (RPM/TPM buckets) join here in a later change.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from broker import keys
from broker.config import BrokerConfig


class InFlight:
    def __init__(self, client: redis.Redis, config: BrokerConfig, margin: int) -> None:
        self._redis = client
        self._limits = {p.name: p.concurrency + margin for p in config.providers}
        self._stale_after = {p.name: 2 * p.timeout_s + 60 for p in config.providers}

    def free_slots(self) -> dict[str, int]:
        """Slots each provider can take now (limit minus what is in flight), never negative."""
        now = time.time()
        names = list(self._limits)
        with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.zremrangebyscore(keys.in_flight(name), "-inf", now - self._stale_after[name])
                pipe.zcard(keys.in_flight(name))
            counts = pipe.execute()[1::2]
        return {name: max(0, self._limits[name] - n) for name, n in zip(names, counts)}

    def add(self, pipe: redis.client.Pipeline, provider: str, request_ids: Iterable[str]) -> None:
        now = time.time()
        mapping = {rid: now for rid in request_ids}
        if mapping:
            pipe.zadd(keys.in_flight(provider), mapping)


def release(client: redis.Redis, provider: str, request_id: str) -> None:
    """A worker is done with an attempt: free its slot and wake the scheduler."""
    with client.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.in_flight(provider), request_id)
        pipe.lpush(keys.scheduler_wake(), "done")
        pipe.ltrim(keys.scheduler_wake(), 0, 0)
        pipe.execute()
