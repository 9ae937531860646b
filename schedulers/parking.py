"""Requests with nowhere to go while circuit breakers are open, set aside so their team goes on.

A request none of whose models can take a call now (every model of its chain, or its provider,
behind an open breaker, or behind a half-open one whose probes are spent) would otherwise stay at
the head of its team's queue and hold back the team's other work, healthy providers and all.
The round takes it out of the queue onto the team's parked list instead; it stays ``queued``
in the database, so queue reconciliation and a rebuild after Redis lost its data find it.

Breakers stop refusing by themselves (open → half-open after ``open_s``, half-open → closed
after good probes), so parking needs no timer: when a scope that refused last round no longer
does, the leader puts the parked requests that have a healthy model again back at the front of
their queues, in order. One that still cannot go is parked again by the round that reaches it.
Only the leader parks and releases, from its round thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import redis

from broker import queues, redis_keys
from broker.queues import QueueEntry
from broker.states import Priority

log = logging.getLogger(__name__)


class Parking:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def park(
        self, pipe: redis.client.Pipeline, parked: Sequence[tuple[str, Priority, QueueEntry]]
    ) -> None:
        """Queue parking these on ``pipe``, ahead of the pops that take them off their queues
        (a crash in between leaves a copy the scheduler skips, never a loss)."""
        for team, priority, entry in parked:
            pipe.rpush(redis_keys.parked(team), queues.encode_set_aside(priority, entry))
            pipe.sadd(redis_keys.parked_teams(), team)

    def release(self, routable: Callable[[QueueEntry], bool]) -> int:
        """Put back the parked requests ``routable`` accepts; returns how many went back."""
        released = 0
        for raw_team in self._redis.smembers(redis_keys.parked_teams()):
            team = raw_team.decode()
            raw = self._redis.lrange(redis_keys.parked(team), 0, -1)
            back, still = [], []
            for line in raw:
                priority, entry = queues.decode_set_aside(line)
                if routable(entry):
                    back.append((priority, entry))
                else:
                    still.append(line)
            # Back in the queue before off the parked list: a crash in between leaves a copy
            # that the round skips (its request is no longer queued), never a loss.
            queues.restore(self._redis, team, back)
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(redis_keys.parked(team))
                if still:
                    pipe.rpush(redis_keys.parked(team), *still)
                else:
                    pipe.srem(redis_keys.parked_teams(), team)
                pipe.execute()
            released += len(back)
        if released:
            log.info("%d parked requests have a healthy model again: queued", released)
        return released
