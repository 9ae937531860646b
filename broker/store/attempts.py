"""An attempt's claim and its end, and the values that describe an attempt.

A worker claims the attempts it was handed (dispatched → running, :func:`claim_many`) and
records how each ended: running → succeeded/failed with its ledger row, its provider calls and
its job's counters (:func:`finish_many`). :class:`Claimed`, :class:`Outcome`, :class:`Call` and
:class:`HandBack` are what the workers build and the recorder writes.

Kept apart from :mod:`broker.store.transitions` (the scheduler's and the API's moves: dispatch,
requeue and hand-back, hold, cancel, expire) because this is the recorder's batched path: one
read and one executemany per batch, its statements built once. The rule is the same: each
write names the state and the attempt it comes from, so a redelivered task can neither record
nor charge twice, and the job's counters and webhook events move in the same transaction
(:mod:`broker.store.job_counts`). :mod:`broker.store.transitions` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from broker.states import RequestStatus
from broker.store.db import WriteConflict
from broker.store.job_counts import count_ended
from broker.store.models import LedgerEntry, ProviderCall, Request, utcnow
from broker.store.outbox import RequestEnd

_R, _L = Request.__table__, LedgerEntry.__table__
_C = ProviderCall.__table__
_COUNTERS = ("succeeded", "failed", "input_tokens", "output_tokens", "cost_micros")


@dataclass(frozen=True, slots=True)
class Claimed:
    request_id: str
    job_id: str
    team_id: str
    feature: str
    model: str
    attempt: int
    payload: dict[str, Any]
    trace_id: str | None = None
    failures: int = 0
    route: str | None = None
    route_decision: dict[str, Any] | None = None
    #: Its caller reads the answer as it is written: publish the deltas.
    streamed: bool = False


@dataclass(frozen=True, slots=True)
class Call:
    """One provider call of an attempt: ``outcome`` is ``succeeded`` or the error code."""

    model: str
    provider: str
    outcome: str
    latency_ms: int
    error: str | None = None
    cost_micros: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt produced; ``error_code`` set means it failed."""

    model: str
    provider: str
    latency_ms: int
    output: str | None = None
    finish_reason: str | None = None
    stop_sequence: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    cache_savings_micros: int = 0
    error_code: str | None = None
    error: str | None = None
    calls: tuple[Call, ...] = ()
    route_decision: dict[str, Any] | None = None  # updated by a cascade's checks, if any

    @property
    def succeeded(self) -> bool:
        return self.error_code is None


@dataclass(frozen=True, slots=True)
class HandBack:
    """An attempt that ends with its request queued again rather than finished: a 429, an
    open breaker, or a failure that sends it down its model's chain."""

    chain_index: int
    failed: bool  # counts against ``max_attempts``
    calls: tuple[Call, ...] = ()


# Both conditions on purpose: the row-value IN says which attempt, and ``id IN`` lets SQLite use
# the primary key (it scans the whole table for a row-value IN alone).
_CLAIM = (
    update(_R)
    .where(
        _R.c.id.in_(bindparam("b_ids", expanding=True)),
        tuple_(_R.c.id, _R.c.attempts).in_(bindparam("b_keys", expanding=True)),
        _R.c.status == RequestStatus.DISPATCHED,
    )
    .values(status=RequestStatus.RUNNING, started_at=bindparam("b_now"))
    .returning(
        _R.c.id,
        _R.c.attempts,
        _R.c.job_id,
        _R.c.team_id,
        _R.c.feature,
        _R.c.model,
        _R.c.payload,
        _R.c.trace_id,
        _R.c.failures,
        _R.c.route,
        _R.c.route_decision,
        _R.c.streamed,
    )
)
_STILL_RUNNING = select(_R.c.id, _R.c.attempts).where(
    _R.c.id.in_(bindparam("b_ids", expanding=True)),
    tuple_(_R.c.id, _R.c.attempts).in_(bindparam("b_keys", expanding=True)),
    _R.c.status == RequestStatus.RUNNING,
)


def claim_many(
    session: Session, attempts: Sequence[tuple[str, int]]
) -> dict[tuple[str, int], Claimed]:
    """dispatched → running for these (request id, attempt) pairs, keyed by the pair; stale
    ones are left out."""
    if not attempts:
        return {}
    params = {"b_ids": [rid for rid, _ in attempts], "b_keys": list(attempts), "b_now": utcnow()}
    rows = session.execute(_CLAIM, params).all()
    return {
        (row.id, row.attempts): Claimed(
            row.id,
            row.job_id,
            row.team_id,
            row.feature,
            row.model,
            row.attempts,
            row.payload,
            row.trace_id,
            row.failures,
            row.route,
            row.route_decision,
            bool(row.streamed),
        )
        for row in rows
    }


_FINISH = (
    update(_R)
    .where(
        _R.c.id == bindparam("b_id"),
        _R.c.attempts == bindparam("b_attempt"),
        _R.c.status == RequestStatus.RUNNING,
    )
    .values(
        {
            **{
                name: bindparam(f"b_{name}")
                for name in (
                    "status",
                    "model_used",
                    "provider_used",
                    "output",
                    "finish_reason",
                    "stop_sequence",
                    "input_tokens",
                    "cached_input_tokens",
                    "output_tokens",
                    "latency_ms",
                    "error_code",
                    "error",
                    "finished_at",
                )
            },
            # what earlier tiers of a cascade were charged, plus this attempt
            "cost_micros": func.coalesce(_R.c.cost_micros, 0) + bindparam("b_cost_micros"),
        }
    )
)


def finish_many(session: Session, finished: Sequence[tuple[Claimed, Outcome]]) -> list[bool]:
    """running → succeeded/failed, ledger rows and job counters for many attempts at once.

    Each attempt is recorded only if it is still running under that attempt number, so a
    redelivered task can neither record nor charge twice (False in the returned list). One
    read finds the attempts still running, one executemany records them, and each job row is
    updated once per batch, however many of its requests finished in it.
    """
    if not finished:
        return []
    keys = [(claimed.request_id, claimed.attempt) for claimed, _ in finished]
    params = {"b_ids": [rid for rid, _ in keys], "b_keys": keys}
    running = {(row.id, row.attempts) for row in session.execute(_STILL_RUNNING, params)}
    now = utcnow()
    recorded, params, ledger, calls = [], [], [], []
    deltas: dict[str, dict[str, int]] = {}
    ends: dict[str, list[RequestEnd]] = {}
    for (claimed, outcome), key in zip(finished, keys):
        won = key in running
        running.discard(key)  # the same attempt twice in one batch counts once
        recorded.append(won)
        if not won:
            continue
        params.append(_finish_params(claimed, outcome, now))
        calls.extend(call_rows(claimed, outcome.calls, now))
        if outcome.succeeded:
            ledger.append(ledger_row(claimed, outcome, now))
        delta = deltas.setdefault(claimed.job_id, dict.fromkeys(_COUNTERS, 0))
        delta["succeeded" if outcome.succeeded else "failed"] += 1
        delta["input_tokens"] += outcome.input_tokens + outcome.cached_input_tokens
        delta["output_tokens"] += outcome.output_tokens
        delta["cost_micros"] += outcome.cost_micros
        ends.setdefault(claimed.job_id, []).append(
            RequestEnd(
                claimed.request_id,
                RequestStatus.SUCCEEDED if outcome.succeeded else RequestStatus.FAILED,
                outcome.cost_micros,
                outcome.error_code,
            )
        )
    if params and session.execute(_FINISH, params).rowcount != len(params):
        raise WriteConflict("an attempt was finished by another writer meanwhile")
    for (claimed, outcome), won in zip(finished, recorded):
        if won and outcome.route_decision is not None:  # a cascade's verdicts (shadow too)
            session.execute(
                update(_R)
                .where(_R.c.id == claimed.request_id)
                .values(route_decision=outcome.route_decision)
            )
    if ledger:
        session.execute(insert(_L), ledger)
    if calls:
        session.execute(insert(_C), calls)
    for job_id in sorted(deltas):  # a fixed order: concurrent writers cannot deadlock
        count_ended(session, job_id, ended=ends[job_id], **deltas[job_id])
    return recorded


def _finish_params(claimed: Claimed, outcome: Outcome, now: datetime) -> dict[str, Any]:
    return {
        "b_id": claimed.request_id,
        "b_attempt": claimed.attempt,
        "b_status": RequestStatus.SUCCEEDED if outcome.succeeded else RequestStatus.FAILED,
        "b_model_used": outcome.model,
        "b_provider_used": outcome.provider,
        "b_output": outcome.output,
        "b_finish_reason": outcome.finish_reason,
        "b_stop_sequence": outcome.stop_sequence,
        "b_input_tokens": outcome.input_tokens,
        "b_cached_input_tokens": outcome.cached_input_tokens,
        "b_output_tokens": outcome.output_tokens,
        "b_cost_micros": outcome.cost_micros,
        "b_latency_ms": outcome.latency_ms,
        "b_error_code": outcome.error_code,
        "b_error": outcome.error,
        "b_finished_at": now,
    }


def call_rows(claimed: Claimed, calls: Sequence[Call], now: datetime) -> list[dict[str, Any]]:
    return [
        {
            "request_id": claimed.request_id,
            "attempt": claimed.attempt,
            "try": n,
            "model": call.model,
            "provider": call.provider,
            "outcome": call.outcome,
            "error": call.error,
            "latency_ms": call.latency_ms,
            "cost_micros": call.cost_micros,
            "created_at": now,
        }
        for n, call in enumerate(calls, start=1)
    ]


def ledger_row(claimed: Claimed, outcome: Outcome, now: datetime) -> dict[str, Any]:
    return {
        "request_id": claimed.request_id,
        "attempt": claimed.attempt,
        "job_id": claimed.job_id,
        "team_id": claimed.team_id,
        "feature": claimed.feature,
        "model": outcome.model,
        "provider": outcome.provider,
        "input_tokens": outcome.input_tokens,
        "cached_input_tokens": outcome.cached_input_tokens,
        "output_tokens": outcome.output_tokens,
        "cost_micros": outcome.cost_micros,
        "cache_savings_micros": outcome.cache_savings_micros,
        "trace_id": claimed.trace_id,
        "created_at": now,
    }
