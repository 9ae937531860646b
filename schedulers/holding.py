"""Requests held by a team's ``hold`` budget policy, and bringing them back.

A held request leaves its team's queue (so it does not block the team's other work) for a held
list per team, and ``waiting_budget`` in the database; both are written before the queue entry
is popped, so a crash in between leaves a copy the scheduler skips, never a loss. Every
``check_s`` the leader looks at the first held request of each team: once it would fit (the
window reset, or an operator raised the limit), the team's whole held list goes back to the
front of its queues in order, and anything that still does not fit is held again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import redis

from broker import queues, redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.queues import QueueEntry
from broker.states import Priority
from broker.store import Database, transitions
from schedulers.budget_policy import downgrades
from schedulers.budgets import BudgetRound, Budgets, cost_bound

log = logging.getLogger(__name__)


class Holding:
    def __init__(
        self, client: redis.Redis, db: Database, config: BrokerConfig, budgets: Budgets
    ) -> None:
        self._redis = client
        self._db = db
        self._config = config
        self._budgets = budgets

    def hold(self, held: Sequence[tuple[str, Priority, QueueEntry]]) -> None:
        if not held:
            return
        ids = [entry.request_id for _, _, entry in held]
        still = set(self._db.write(lambda s: transitions.hold_for_budget(s, ids)))
        with self._redis.pipeline(transaction=False) as pipe:
            for team, priority, entry in held:
                if entry.request_id in still:
                    pipe.rpush(redis_keys.held(team), queues.encode_set_aside(priority, entry))
                    pipe.sadd(redis_keys.held_teams(), team)
            pipe.execute()
        log.info("holding %d requests until their budgets have room", len(still))

    def resume(self) -> int:
        """Bring back the held requests of every team whose first one fits now."""
        resumed = 0
        for raw_team in self._redis.smembers(redis_keys.held_teams()):
            team = raw_team.decode()
            head = self._redis.lindex(redis_keys.held(team), 0)
            if head is None:
                self._redis.srem(redis_keys.held_teams(), team)
                continue
            _, entry = queues.decode_set_aside(head)
            if self._fits(team, entry):
                resumed += self._release(team)
        return resumed

    def _fits(self, team: str, entry: QueueEntry) -> bool:
        if not self._config.has_model(entry.model):
            return True  # let the loop fail it with its reason
        budgets = BudgetRound(self._budgets)
        scopes = budgets.scopes(team, entry)
        policy = self._config.team(team).budget_policy if self._config.has_team(team) else "hold"
        candidates = [entry.model]
        if policy == "downgrade":
            candidates += downgrades(self._config, entry)
        cheapest = min(cost_bound(self._config, m, entry) for m in candidates)
        return budgets.over(scopes, cheapest) is None

    def _release(self, team: str) -> int:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.lrange(redis_keys.held(team), 0, -1)
            pipe.delete(redis_keys.held(team))
            raw, _ = pipe.execute()
        held = [queues.decode_set_aside(r) for r in raw]
        ids = [entry.request_id for _, entry in held]
        waiting = set(self._db.write(lambda s: transitions.release_held(s, ids)))
        queues.restore(self._redis, team, [(p, e) for p, e in held if e.request_id in waiting])
        log.info("resumed %d held requests of team %s", len(waiting), team)
        return len(waiting)
