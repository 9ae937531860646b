"""The scheduler loop: each round, fill what the providers can take from the team queues.

A round, in a fixed order:

1. :class:`~schedulers.capacity.Room`: free in-flight slots, rate-limit budget and breaker
   permits per provider; nothing to do if there is none.
2. Peek at the head of every backlogged team's queues, only as deep as the round could
   dispatch (so a round costs the same with ten queued requests or a million).
3. :mod:`~schedulers.fairness`: take the backlogged team with the smallest virtual counter;
   :mod:`~schedulers.priorities`: its next request; :mod:`~schedulers.routing`: where it may
   run (its model's chain, past open breakers). If it fits, charge the team and pick it; if
   not, the team sits out the rest of the round (its work waits its turn) while the others go
   on, so a full provider blocks nobody whose work can go elsewhere. A request with every
   model of its chain behind open breakers is parked (:mod:`~schedulers.parking`) rather than
   left to hold back its team; it comes back when one of those breakers lets calls through.
4. :mod:`~schedulers.dispatch`: record and send the picks.
5. One pipeline pops the dispatched entries from the queue heads (only the leader pops, so a
   peeked prefix is still the head), writes the counters and clears the dispatch journal.

Only the leader runs rounds (:mod:`~schedulers.leader`). When a round dispatches nothing the
loop sleeps on the wake list until a submission or a finished attempt pushes to it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis
from kombu.exceptions import KombuError
from sqlalchemy.exc import SQLAlchemyError

from broker import queues as queues_module
from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.pipelines import execute_unchecked
from broker.queues import QueueEntry, now_ms
from broker.states import PRIORITY_ORDER, Priority
from schedulers.budget_policy import Verdict, decide
from schedulers.budgets import BudgetRound, Budgets
from schedulers.caching import CacheCheck, Known
from schedulers.capacity import InFlight, Room
from schedulers.dispatch import Dispatcher, Pick
from schedulers.fairness import FairQueue, OutputEstimates, Round, ServiceMeter
from schedulers.holding import Holding
from schedulers.leader import Leadership
from schedulers.parking import Parking
from schedulers.priorities import TeamQueues
from schedulers.ratelimits import RateLimits
from schedulers.routing import Router
from workers.breakers import Breakers

log = logging.getLogger(__name__)


@dataclass
class _Decisions:
    """What one round decided: send these, fail those (entry, code, message), hold those (for
    their budgets), park those (behind open breakers)."""

    picks: list[Pick] = field(default_factory=list)
    failed: list[tuple[QueueEntry, str, str]] = field(default_factory=list)
    held: list[tuple[str, Priority, QueueEntry]] = field(default_factory=list)
    parked: list[tuple[str, Priority, QueueEntry]] = field(default_factory=list)


_PRUNE = (Path(__file__).parent / "prune_teams.lua").read_text()


class Scheduler:
    def __init__(
        self,
        client: redis.Redis,
        config: BrokerConfig,
        in_flight: InFlight,
        limits: RateLimits,
        dispatcher: Dispatcher,
        *,
        weights: Callable[[], Mapping[str, float]] | None = None,
        paused: Callable[[], set[str]] | None = None,
        budgets: Budgets | None = None,
        holding: Holding | None = None,
        housekeeping: Callable[[], None] | None = None,
        leadership: Leadership | None = None,
        breakers: Breakers | None = None,
        caching: CacheCheck | None = None,
        outputs: OutputEstimates | None = None,
        idle_wait_s: float = 0.2,
    ) -> None:
        self._redis = client
        self._config = config
        self._in_flight = in_flight
        self._limits = limits
        self._dispatcher = dispatcher
        self._router = Router(config)
        self._meter = ServiceMeter(config)
        self._fair = FairQueue(client)
        self._outputs = outputs or OutputEstimates(client)
        self._weights = weights or (lambda: {t.id: t.weight for t in config.teams})
        self._paused = paused or set
        self._budgets = budgets if budgets is not None and budgets.enabled else None
        self._holding = holding
        self._housekeeping = housekeeping
        self._leadership = leadership
        self._breakers = breakers
        self._caching = caching
        self._swept_at = 0.0
        self._parking = Parking(client)
        #: Breaker scopes refusing calls at the last round (None: not known, as for a new leader).
        self._refusing: frozenset[str] | None = None
        self._idle_wait_s = idle_wait_s
        self._max_wait_ms = int(config.scheduler.max_wait_s * 1000)
        self._prune = client.register_script(_PRUNE)
        self._recover = True  # a new leader replays the dispatch journal first
        self._settled_other = 0  # requests the last round failed or held: it made progress

    def run_once(self) -> int:
        """One scheduling round; returns the number of requests dispatched."""
        self._settled_other = 0
        if self._caching is not None:
            self._settled_other += self._sweep_flights()
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(redis_keys.backlogged_teams())
            pipe.scard(redis_keys.parked_teams())
            backlogged, parked_teams = pipe.execute()
        if not backlogged and not parked_teams:
            # Nothing queued or parked: the round would end empty, so it skips working out the
            # room (several round trips). The round after a dispatch and the one a finished
            # attempt wakes are mostly this, and on the interactive path they take CPU the
            # request's own work needs.
            return 0
        breakers = self._breakers.allowances if self._breakers is not None else None
        room = Room(self._in_flight, self._limits, breakers)
        window = room.window()
        if window == 0:
            return 0
        if self._refusing is None or self._refusing - room.refusing:
            released = self._parking.release(lambda e: self._routable(e, room))
            if released:  # their teams are backlogged again
                backlogged = self._redis.smembers(redis_keys.backlogged_teams())
            self._settled_other += released
        self._refusing = room.refusing
        paused = self._paused()
        teams = sorted(t for t in (raw.decode() for raw in backlogged) if t not in paused)
        if not teams:
            return 0
        weights = dict(self._weights())
        for team in teams:
            weights.setdefault(team, 1.0)  # a team gone from the config still drains
        queues = self._peek(teams, window)
        known = None
        if self._caching is not None:
            known = self._caching.look(e for q in queues.values() for e in q.cache_readers())
        round_ = self._fair.start_round(teams, weights)
        self._outputs.refresh()
        decided = self._pick(round_, queues, room, known)
        if known is not None:  # flights up before their tasks can finish
            self._caching.before_dispatch(known)
        # Dispatch before popping: if dispatch fails the entries stay queued for the next round;
        # if popping fails, the next round finds them no longer queued in the database.
        sent, bounced = self._dispatcher.dispatch(decided.picks)
        if room.probes:  # probes picked for half-open breakers: their permits are spent
            self._breakers.take(room.probes)
        sent_ids = {p.entry.request_id for p in sent}
        if known is not None:
            self._caching.after_dispatch(known, sent_ids)
            self._settled_other += len(known.hits) + len(known.waiting)
        for pick in decided.picks:
            if pick.entry.request_id not in sent_ids:  # cancelled or refused: not served
                round_.refund(pick.team, pick.service)
        self._dispatcher.fail(decided.failed)
        if self._holding is not None:
            self._holding.hold(decided.held)
        with self._redis.pipeline(transaction=False) as pipe:
            self._parking.park(pipe, decided.parked)
            for team, team_queues in queues.items():
                for priority, count in team_queues.taken().items():
                    pipe.lpop(redis_keys.team_queue(team, priority), count)
            self._fair.finish_round(pipe, round_)
            pipe.delete(redis_keys.dispatch_journal())
            self._prune(
                keys=[redis_keys.backlogged_teams()],
                args=[redis_keys.team_queue_prefix(), *teams],
                client=pipe,
            )
            execute_unchecked(pipe)
        for pick in bounced:
            queues_module.push_front(self._redis, pick.team, pick.priority, [pick.entry])
        self._settled_other += len(decided.failed) + len(decided.held) + len(decided.parked)
        return len(sent)

    def _peek(self, teams: list[str], window: int) -> dict[str, TeamQueues]:
        with self._redis.pipeline(transaction=False) as pipe:
            for team in teams:
                for priority in PRIORITY_ORDER:
                    pipe.lrange(redis_keys.team_queue(team, priority), 0, window - 1)
            raw = iter(pipe.execute())
        now = now_ms()
        return {
            team: TeamQueues(
                {p: next(raw) for p in PRIORITY_ORDER},
                now_ms=now,
                max_wait_ms=self._max_wait_ms,
            )
            for team in teams
        }

    def _sweep_flights(self) -> int:
        """Free the waiters of lost flights, at most once a second; returns how many."""
        now = time.monotonic()
        if now - self._swept_at < 1.0:
            return 0
        self._swept_at = now
        return self._caching.sweep()

    def _pick(
        self, round_: Round, queues: dict[str, TeamQueues], room: Room, known: Known | None = None
    ) -> _Decisions:
        """Serve the smallest counter first, one request at a time, while anything fits; a
        request the cache answers, or that waits for an identical one, takes no turn."""
        out = _Decisions()
        config = self._config
        budgets = BudgetRound(self._budgets) if self._budgets is not None else None
        while (team := round_.top()) is not None:
            head = queues[team].peek()
            if head is None:
                round_.drop()
                continue
            priority, entry = head
            if known is not None and known.decide(team, priority, entry) != "go":
                queues[team].take(priority)
                continue
            allow = config.has_team(team) and config.team(team).allow_fallback
            routes = self._router.routes(entry.model, entry.chain_index)
            if routes is None:
                queues[team].take(priority)
                message = f"model {entry.model!r} is no longer in the catalog"
                out.failed.append((entry, "unknown_model", message))
                continue
            tokens = entry.est_tokens
            guard = (team, entry.feature)
            route = None
            reachable = False
            for candidate in routes:
                if not room.healthy(*candidate):
                    continue  # an open breaker: down the chain, for every team
                reachable = True
                if room.fits(*candidate, tokens, *guard):
                    route = candidate
                    break
                if not allow:
                    break  # healthy but full: only teams that allow it spill over
            if route is None:
                if reachable:
                    round_.drop()  # waits its turn; the other teams go on
                else:  # nowhere to go until a breaker lets calls through: out of the way
                    queues[team].take(priority)
                    out.parked.append((team, priority, entry))
                continue
            verdict = Verdict("go", *route)
            if budgets is not None:
                verdict = decide(config, budgets, team, entry, route, room)
                if verdict.action != "go":
                    queues[team].take(priority)
                    if verdict.action == "reject":
                        out.failed.append((entry, "budget_exceeded", verdict.reason))
                    else:
                        out.held.append((team, priority, entry))
                    continue
                budgets.hold(verdict.scopes, verdict.amount)
            provider, model = verdict.provider, verdict.model
            room.take(provider, model, tokens, *guard)
            queues[team].take(priority)
            output = self._outputs.output(team, entry.feature, model, entry.max_output)
            service = self._meter.service(model, entry.est_input, output)
            round_.charge(service)
            if known is not None:
                known.picked(entry)
            out.picks.append(
                Pick(
                    team, priority, entry, provider, model, service, verdict.amount, verdict.scopes
                )
            )
        return out

    def _routable(self, entry: QueueEntry, room: Room) -> bool:
        """Whether some model of the entry's chain lets calls through (an unknown model: yes,
        for the round to fail it with its reason)."""
        routes = self._router.routes(entry.model, entry.chain_index)
        return routes is None or any(room.healthy(*route) for route in routes)

    def run_forever(self, stop: threading.Event) -> None:
        log.info("scheduler running")
        leadership = self._leadership
        try:
            while not stop.is_set():
                try:
                    if leadership is not None and not leadership.lead():
                        self._fair.forget_leadership()
                        self._recover = True
                        self._refusing = None
                        stop.wait(min(1.0, self._config.scheduler.lease_s / 5))
                        continue
                    if self._recover:
                        self._dispatcher.recover()
                        self._recover = False
                    if self._housekeeping is not None:
                        self._housekeeping()
                    dispatched = self.run_once()
                    if dispatched == 0 and self._settled_other == 0:
                        self._redis.blpop([redis_keys.scheduler_wake()], timeout=self._idle_wait_s)
                except (redis.RedisError, SQLAlchemyError, KombuError) as exc:
                    log.warning("scheduling round failed, retrying in 1 s: %s", exc)
                    stop.wait(1.0)
        finally:
            if leadership is not None:
                try:
                    leadership.resign()
                except redis.RedisError as exc:  # the lease expires by itself
                    log.warning("could not give up the leader lease: %s", exc)
            log.info("scheduler stopped")
