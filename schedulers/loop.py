"""The scheduler loop: each round, fill free provider slots from the team queues.

A round reads free slots per provider, peeks at the head of every backlogged team's queues
(high, then medium, then low), lets the fairness policy order the teams and takes one request
per team per turn while its provider has room. Taken entries are popped from the head of their
lists (only the scheduler pops, so a peeked prefix is still the head) and dispatched. When a
round dispatches nothing the loop sleeps on the wake list until a submission or a finished
attempt pushes to it.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path

import redis
from sqlalchemy.exc import SQLAlchemyError

from broker import keys
from broker.queues import QueueEntry
from broker.states import PRIORITY_ORDER, Priority
from schedulers.capacity import InFlight
from schedulers.dispatch import Dispatcher, Pick
from schedulers.fairness import RoundRobin
from schedulers.routing import Router

log = logging.getLogger(__name__)

_PRUNE = (Path(__file__).parent / "prune_teams.lua").read_text()


class Scheduler:
    def __init__(
        self,
        client: redis.Redis,
        in_flight: InFlight,
        router: Router,
        dispatcher: Dispatcher,
        fairness: RoundRobin | None = None,
        idle_wait_s: float = 0.2,
    ) -> None:
        self._redis = client
        self._in_flight = in_flight
        self._router = router
        self._dispatcher = dispatcher
        self._fairness = fairness or RoundRobin()
        self._idle_wait_s = idle_wait_s
        self._prune = client.register_script(_PRUNE)

    def run_once(self) -> int:
        """One scheduling round; returns the number of requests dispatched."""
        free = self._in_flight.free_slots()
        window = sum(free.values())
        if window == 0:
            return 0
        teams = sorted(t.decode() for t in self._redis.smembers(keys.backlogged_teams()))
        if not teams:
            return 0
        heads = self._peek(teams, window)
        picks, unroutable, taken = self._pick(heads, free)
        # Dispatch before popping: if dispatch fails the entries stay queued for the next round;
        # if popping fails, the next round finds them no longer queued in the database.
        dispatched = self._dispatcher.dispatch(picks)
        self._dispatcher.fail_unroutable(unroutable)
        self._pop(taken)
        self._prune(keys=[keys.backlogged_teams()], args=[keys.team_queue_prefix(), *teams])
        return dispatched

    def _peek(self, teams: list[str], window: int) -> dict[str, dict[Priority, list[QueueEntry]]]:
        with self._redis.pipeline(transaction=False) as pipe:
            for team in teams:
                for priority in PRIORITY_ORDER:
                    pipe.lrange(keys.team_queue(team, priority), 0, window - 1)
            raw = iter(pipe.execute())
        return {
            team: {p: [QueueEntry.decode(e) for e in next(raw)] for p in PRIORITY_ORDER}
            for team in teams
        }

    def _pick(
        self, heads: dict[str, dict[Priority, list[QueueEntry]]], free: dict[str, int]
    ) -> tuple[list[Pick], list[QueueEntry], dict[tuple[str, Priority], int]]:
        """Round-robin over teams, priority order inside each, a team stops at a full provider.

        Returns the picks, entries whose model left the catalog, and how many entries to pop
        from the head of each (team, priority) list.
        """
        pending = {
            team: deque((p, e) for p in PRIORITY_ORDER for e in by_priority[p])
            for team, by_priority in heads.items()
        }
        picks: list[Pick] = []
        unroutable: list[QueueEntry] = []
        taken: dict[tuple[str, Priority], int] = {}
        active = [t for t in self._fairness.order(list(pending)) if pending[t]]
        while active and any(free.values()):
            still = []
            for team in active:
                priority, entry = pending[team][0]
                provider = self._router.provider_for(entry.model)
                if provider is not None and free.get(provider.name, 0) <= 0:
                    continue
                pending[team].popleft()
                taken[(team, priority)] = taken.get((team, priority), 0) + 1
                if provider is None:
                    unroutable.append(entry)
                else:
                    free[provider.name] -= 1
                    picks.append(Pick(team, entry, provider.name, provider.queue))
                    self._fairness.served(team, entry.est_tokens)
                if pending[team]:
                    still.append(team)
            active = still
        return picks, unroutable, taken

    def _pop(self, taken: dict[tuple[str, Priority], int]) -> None:
        if not taken:
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for (team, priority), count in taken.items():
                pipe.lpop(keys.team_queue(team, priority), count)
            pipe.execute()

    def run_forever(self, stop: threading.Event) -> None:
        log.info("scheduler running")
        while not stop.is_set():
            try:
                dispatched = self.run_once()
            except (redis.RedisError, SQLAlchemyError) as exc:
                log.warning("scheduling round failed, retrying in 1 s: %s", exc)
                stop.wait(1.0)
                continue
            if dispatched == 0:
                self._redis.blpop([keys.scheduler_wake()], timeout=self._idle_wait_s)
        log.info("scheduler stopped")
