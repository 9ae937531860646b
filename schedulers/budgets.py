"""Budgets that are never overshot: reserve the worst case before dispatch, settle the actual.

A request counts against every budget that covers it: its team's and its feature's budgets
(``[[budgets]]``, each in its current UTC window) and, with a ``trace_id``, its team's per-trace
ceiling. Before the scheduler dispatches it, one Lua script (``budgets.lua``) reserves its worst
case in all of them at once, or in none: ``input bound × input price + max_tokens × output
price``, rounded up. The worker passes ``max_tokens`` to the provider, and the input bound is the
prompt's byte count (a byte-level BPE token is at least a byte) plus framing, so the actual cost
cannot exceed the reservation. When the attempt ends the worker settles: the reservation is
replaced by the actual cost, once per attempt (a flag keyed by attempt), so a redelivered task
cannot settle twice. Spent + reserved therefore never passes a limit, by construction: the check
and the write are one atomic step, and settling only ever lowers the total.

Redis is the fast path; the cost ledger in the database is the record. A budget key that Redis
does not have (a new window, or Redis lost its data) is loaded from the ledger before anything
is checked against it (``loaded`` marks that it has been).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import redis
from sqlalchemy import func, select

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.config.budgets import BudgetConfig
from broker.config.routes import JUDGE_FRAMING_BYTES
from broker.money import format_usd, usd_to_micros
from broker.queues import QueueEntry
from broker.store import BudgetLimit, Database, LedgerEntry
from schedulers.reread import Reread

log = logging.getLogger(__name__)

_SCRIPT = (Path(__file__).parent / "budgets.lua").read_text()
#: How long the settled flag of an attempt is kept: longer than any redelivery can come.
SETTLED_TTL_S = 7 * 24 * 3600
_NO_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class Scope:
    """One budget in its current window, as a request meets it."""

    key: str
    label: str  # what people read: "product/daily" or "trace run-7 of product"
    limit: int  # micro-dollars
    team: str
    feature: str | None = None
    start: datetime | None = None  # window; None for a trace ceiling (no window)
    end: datetime | None = None
    trace: str | None = None


def cost_bound(config: BrokerConfig, model: str, entry: QueueEntry) -> int:
    """The most a request can cost on ``model``, in micro-dollars, rounded up: with the
    judge's call when its route's cascade has a judge read that tier's answers."""
    m = config.model(model)
    bound = entry.input_bound * m.input_price + entry.max_output * m.output_price
    return math.ceil(bound) + _judge_bound(config, model, entry)


def _judge_bound(config: BrokerConfig, model: str, entry: QueueEntry) -> int:
    """The judge reads the request (``input_bound`` bytes: no more tokens than that), the
    answer (at most ``max_output`` tokens, counted twice for another tokenizer) and its
    framing, and writes at most ``judge_max_tokens``."""
    route = config.route(entry.route) if entry.route != "-" else None
    cascade = route.cascade if route is not None else None
    if cascade is None or cascade.judge is None or model not in route.tiers[:-1]:
        return 0
    judge = config.model(cascade.judge)
    tokens_in = entry.input_bound + 2 * entry.max_output + JUDGE_FRAMING_BYTES
    return math.ceil(tokens_in * judge.input_price + cascade.judge_max_tokens * judge.output_price)


class BudgetLimits(Reread[dict[str, int]]):
    """Callable: budget id → limit in micro-dollars; broker.toml overridden by operators."""

    what = "budget limits"

    def __init__(self, db: Database, config: BrokerConfig, refresh_s: float = 2.0) -> None:
        self._db = db
        self._base = {b.id: b.limit_micros for b in config.budgets}
        super().__init__(dict(self._base), refresh_s)

    def load(self) -> dict[str, int]:
        with self._db.session() as session:
            rows = session.execute(select(BudgetLimit.budget_id, BudgetLimit.limit_micros))
            return {**self._base, **{r.budget_id: r.limit_micros for r in rows}}


class Budgets:
    def __init__(
        self, client: redis.Redis, db: Database, config: BrokerConfig, limits: BudgetLimits
    ) -> None:
        self._redis = client
        self._db = db
        self._config = config
        self._limits = limits
        self._script = client.register_script(_SCRIPT)
        self.enabled = bool(config.budgets) or any(t.trace_limit_usd for t in config.teams)

    def scopes(
        self, team: str, feature: str, trace: str | None, now: datetime | None = None
    ) -> list[Scope]:
        """Every budget a request of ``team``/``feature``/``trace`` counts against, now."""
        if not self.enabled:
            return []
        now = now or datetime.now(UTC)
        limits = self._limits()
        out = [
            self._scope(budget, limits, now) for budget in self._config.budgets_for(team, feature)
        ]
        if trace and self._config.has_team(team):
            ceiling = self._config.team(team).trace_limit_usd
            if ceiling is not None:
                label = f"trace {trace} of {team}"
                out.append(
                    Scope(
                        redis_keys.trace_budget(team, trace),
                        label,
                        usd_to_micros(ceiling),
                        team,
                        trace=trace,
                    )
                )
        return out

    def snapshot(self, scopes: Iterable[Scope]) -> dict[str, list[int]]:
        """key → [spent, reserved] for these scopes, loading any Redis lacks from the ledger."""
        unique = {s.key: s for s in scopes}
        if not unique:
            return {}
        state = self._read(list(unique))
        missing = [unique[k] for k, (_, _, loaded) in state.items() if not loaded]
        if missing:
            for scope in missing:
                self._script(keys=[scope.key], args=["load", self._ledger_spent(scope)])
            state.update(self._read([s.key for s in missing]))
        return {k: [spent, reserved] for k, (spent, reserved, _) in state.items()}

    def _read(self, budget_keys: list[str]) -> dict[str, tuple[int, int, bool]]:
        with self._redis.pipeline(transaction=False) as pipe:
            for key in budget_keys:
                pipe.hmget(key, "spent", "reserved", "loaded")
            replies = pipe.execute()
        return {
            key: (int(spent or 0), int(reserved or 0), loaded is not None)
            for key, (spent, reserved, loaded) in zip(budget_keys, replies)
        }

    def _ledger_spent(self, scope: Scope) -> int:
        query = select(func.coalesce(func.sum(LedgerEntry.cost_micros), 0)).where(
            LedgerEntry.team_id == scope.team
        )
        if scope.trace is not None:
            query = query.where(LedgerEntry.trace_id == scope.trace)
        else:
            query = query.where(
                LedgerEntry.created_at >= scope.start, LedgerEntry.created_at < scope.end
            )
            if scope.feature is not None:
                query = query.where(LedgerEntry.feature == scope.feature)
        with self._db.session() as session:
            return int(session.scalar(query) or 0)

    def reserve(
        self, requests: Sequence[tuple[str, int, Sequence[Scope]]], *, enforce: bool = True
    ) -> list[bool]:
        """Reserve ``amount`` for each (request id, amount, scopes), all of a request's scopes or
        none; returns whether each was reserved. ``enforce=False`` records reservations of
        attempts already in flight (after Redis lost them), whatever the limits say."""
        index: dict[str, int] = {}
        argv: list[object] = ["reserve", repr(time.time())]
        for request_id, amount, scopes in requests:
            argv += [request_id, amount, len(scopes)]
            for scope in scopes:
                limit = scope.limit if enforce else _NO_LIMIT
                argv += [index.setdefault(scope.key, len(index) + 3), limit]
        budget_keys = sorted(index, key=index.__getitem__)
        replies = self._script(
            keys=[redis_keys.reservations(), redis_keys.reservation_times(), *budget_keys],
            args=argv,
        )
        return [bool(r) for r in replies]

    def settle(
        self,
        pipe: redis.client.Pipeline,
        request_id: str,
        attempt: int,
        actual: int,
        scopes: Sequence[Scope],
    ) -> None:
        """Worker side: replace the reservation with the actual cost, once per attempt.

        ``scopes`` (computed now) are charged instead if the reservation is already gone (a
        reaper released it while the attempt was slow).
        """
        self._script(
            keys=[
                redis_keys.reservations(),
                redis_keys.reservation_times(),
                redis_keys.settled(request_id, attempt),
                *(s.key for s in scopes),
            ],
            args=["settle", request_id, actual, SETTLED_TTL_S],
            client=pipe,
        )

    def reconcile(self) -> int:
        """Set each idle budget's spend to the ledger's; returns how many were corrected.

        Redis can only drift upwards (a settlement counted again by a reload from the ledger
        after Redis lost its data): this brings it back, but only for a budget with nothing
        reserved and nothing settled while the ledger was summed, so it can never lose spend.
        """
        corrected = 0
        for scope in self.scopes_of_all_budgets():
            version, spent, reserved = self._redis.hmget(scope.key, "version", "spent", "reserved")
            if spent is None or int(reserved or 0) != 0:
                continue
            ledger = self._ledger_spent(scope)
            if ledger == int(spent):
                continue
            args = ["reconcile", (version or b"0").decode(), ledger]
            if self._script(keys=[scope.key], args=args):
                log.warning(
                    "budget %s: Redis said %s, the ledger %s; set to the ledger",
                    scope.label,
                    format_usd(int(spent)),
                    format_usd(ledger),
                )
                corrected += 1
        return corrected

    def scopes_of_all_budgets(self) -> list[Scope]:
        """Every configured budget in its current window (not the per-trace ceilings)."""
        now = datetime.now(UTC)
        limits = self._limits()
        return [self._scope(budget, limits, now) for budget in self._config.budgets]

    @staticmethod
    def _scope(budget: BudgetConfig, limits: dict[str, int], now: datetime) -> Scope:
        window = budget.window_at(now)
        return Scope(
            redis_keys.budget(budget.id, window.id),
            budget.id,
            limits.get(budget.id, budget.limit_micros),
            budget.team,
            budget.feature,
            window.start,
            window.end,
        )

    def release(self, pipe: redis.client.Pipeline | redis.Redis, request_id: str) -> None:
        """Give back a reservation whose attempt ended without a charge (or never started)."""
        self._script(
            keys=[redis_keys.reservations(), redis_keys.reservation_times()],
            args=["release", request_id],
            client=pipe,
        )


class BudgetRound:
    """One scheduling round's view of the budgets: what it has held so far on top of Redis."""

    def __init__(self, budgets: Budgets) -> None:
        self._budgets = budgets
        self.state: dict[str, list[int]] = {}
        self._scopes: dict[tuple[str, str, str | None], list[Scope]] = {}
        self._now = datetime.now(UTC)

    def scopes(self, team: str, entry: QueueEntry) -> list[Scope]:
        """The budgets of ``entry`` (cached per round: the windows are those of its start)."""
        key = (team, entry.feature, entry.trace)
        found = self._scopes.get(key)
        if found is None:
            found = self._scopes[key] = self._budgets.scopes(
                team, entry.feature, entry.trace, self._now
            )
            missing = [s for s in found if s.key not in self.state]
            if missing:
                self.state.update(self._budgets.snapshot(missing))
        return found

    def over(self, scopes: Sequence[Scope], amount: int) -> Scope | None:
        """The first scope ``amount`` would push past its limit, or None when it fits."""
        for scope in scopes:
            spent, reserved = self.state[scope.key]
            if spent + reserved + amount > scope.limit:
                return scope
        return None

    def hold(self, scopes: Sequence[Scope], amount: int) -> None:
        for scope in scopes:
            self.state[scope.key][1] += amount

    def explain(self, scope: Scope, amount: int) -> str:
        """Why a request does not fit, in words a person can act on."""
        spent, reserved = self.state[scope.key]
        return (
            f"budget {scope.label} exceeded: limit {format_usd(scope.limit)}, spent "
            f"{format_usd(spent)}, reserved {format_usd(reserved)}; this request needs up to "
            f"{format_usd(amount)}"
        )
