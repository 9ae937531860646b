"""Request and job state changes in the database, each a single conditional UPDATE.

Every transition names the state it comes from, so a stale actor (a redelivered task, a
second scheduler, a cancel racing a dispatch) changes nothing: exactly one writer wins and the
others see ``rowcount == 0``. A job's counters move in the same transaction as its requests,
and the job finishes in the transaction that ends its last request (:mod:`broker.store.job_counts`);
its webhook events are written to the outbox (:mod:`broker.store.outbox`) in that same
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, tuple_, update
from sqlalchemy.orm import Session

from broker.states import JobStatus, RequestStatus
from broker.store.db import WriteConflict
from broker.store.job_counts import count_ended
from broker.store.models import Job, LedgerEntry, ProviderCall, Request, utcnow
from broker.store.outbox import RequestEnd

_R, _J, _L = Request.__table__, Job.__table__, LedgerEntry.__table__
_C = ProviderCall.__table__
_CANCELLABLE = (RequestStatus.QUEUED, RequestStatus.WAITING_BUDGET)
_COUNTERS = ("succeeded", "failed", "input_tokens", "output_tokens", "cost_micros")


@dataclass(frozen=True, slots=True)
class Dispatched:
    request_id: str
    job_id: str
    attempt: int


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


def mark_dispatched(session: Session, request_ids: Sequence[str]) -> list[Dispatched]:
    """queued → dispatched for those still queued; starts their jobs. Returns the winners, in
    the order of ``request_ids`` (PostgreSQL's RETURNING has none of its own)."""
    if not request_ids:
        return []
    now = utcnow()
    rows = session.execute(
        update(_R)
        .where(_R.c.id.in_(request_ids), _R.c.status == RequestStatus.QUEUED)
        .values(status=RequestStatus.DISPATCHED, attempts=_R.c.attempts + 1, dispatched_at=now)
        .returning(_R.c.id, _R.c.job_id, _R.c.attempts)
    ).all()
    job_ids = sorted({row.job_id for row in rows})
    if job_ids:
        session.execute(
            update(_J)
            .where(_J.c.id.in_(job_ids), _J.c.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=now)
        )
    place = {rid: i for i, rid in enumerate(request_ids)}
    rows.sort(key=lambda row: place[row.id])
    return [Dispatched(row.id, row.job_id, row.attempts) for row in rows]


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


def requeue(
    session: Session,
    request_id: str,
    attempt: int,
    from_states: Sequence[RequestStatus] = (RequestStatus.RUNNING,),
    *,
    chain_index: int | None = None,
    failed: bool = False,
) -> bool:
    """running → queued, to be dispatched again (a hand-back, see :class:`HandBack`; or the
    attempt died with its worker, from dispatched or running). ``chain_index`` moves the
    request along its model's chain; ``failed`` counts the attempt against ``max_attempts``.

    Returns True when the caller should put the request back on its queue. A request whose job
    is being cancelled ends ``cancelled`` instead, and a stale attempt changes nothing (False).
    """
    ended = _requeue(session, request_id, attempt, from_states, chain_index, failed)
    return ended == RequestStatus.QUEUED


def _requeue(
    session: Session,
    request_id: str,
    attempt: int,
    from_states: Sequence[RequestStatus],
    chain_index: int | None,
    failed: bool,
) -> RequestStatus | None:
    """:func:`requeue`, saying where the request ended: queued, cancelled, or None (stale)."""
    values: dict[str, Any] = {"status": RequestStatus.QUEUED}
    if chain_index is not None:
        values["chain_index"] = chain_index
    if failed:
        values["failures"] = _R.c.failures + 1
    row = session.execute(
        update(_R)
        .where(_R.c.id == request_id, _R.c.attempts == attempt, _R.c.status.in_(from_states))
        .values(values)
        .returning(_R.c.job_id)
    ).one_or_none()
    if row is None:
        return None
    cancel = select(_J.c.cancel_requested_at).where(_J.c.id == row.job_id)
    if session.execute(cancel).scalar() is None:
        return RequestStatus.QUEUED
    session.execute(
        update(_R)
        .where(_R.c.id == request_id)
        .values(status=RequestStatus.CANCELLED, finished_at=utcnow())
    )
    ended = [RequestEnd(request_id, RequestStatus.CANCELLED)]
    count_ended(session, row.job_id, cancelled=1, ended=ended)
    return RequestStatus.CANCELLED


def hand_back_many(session: Session, handed: Sequence[tuple[Claimed, HandBack]]) -> list[bool]:
    """Requeue many attempts (see :func:`requeue`), recording their calls; True for each the
    caller should push back onto its queue."""
    now = utcnow()
    requeued, calls = [], []
    for claimed, back in handed:
        ended = _requeue(
            session,
            claimed.request_id,
            claimed.attempt,
            (RequestStatus.RUNNING,),
            back.chain_index,
            back.failed,
        )
        requeued.append(ended == RequestStatus.QUEUED)
        if ended is not None:  # like an outcome, calls are recorded for the current attempt only
            calls.extend(call_rows(claimed, back.calls, now))
    if calls:
        session.execute(insert(_C), calls)
    return requeued


def fail_attempt(session: Session, request_id: str, attempt: int, code: str, message: str) -> bool:
    """dispatched/running → failed for an attempt that will never report (its worker died)."""
    row = session.execute(
        update(_R)
        .where(
            _R.c.id == request_id,
            _R.c.attempts == attempt,
            _R.c.status.in_((RequestStatus.DISPATCHED, RequestStatus.RUNNING)),
        )
        .values(status=RequestStatus.FAILED, error_code=code, error=message, finished_at=utcnow())
        .returning(_R.c.job_id)
    ).one_or_none()
    if row is None:
        return False
    count_ended(session, row.job_id, failed=1, ended=[RequestEnd(request_id, "failed", 0, code)])
    return True


def fail_queued(session: Session, failures: Sequence[tuple[str, str, str]]) -> int:
    """queued/waiting_budget → failed without an attempt, for (request id, code, message)
    triples: it could not be dispatched at all. Returns how many failed."""
    now = utcnow()
    per_job: dict[str, list[RequestEnd]] = {}
    for request_id, code, message in failures:
        row = session.execute(
            update(_R)
            .where(_R.c.id == request_id, _R.c.status.in_(_CANCELLABLE))
            .values(status=RequestStatus.FAILED, error_code=code, error=message, finished_at=now)
            .returning(_R.c.job_id)
        ).one_or_none()
        if row is not None:
            per_job.setdefault(row.job_id, []).append(RequestEnd(request_id, "failed", 0, code))
    for job_id in sorted(per_job):
        count_ended(session, job_id, failed=len(per_job[job_id]), ended=per_job[job_id])
    return sum(len(ends) for ends in per_job.values())


def hold_for_budget(session: Session, request_ids: Sequence[str]) -> list[str]:
    """queued → waiting_budget; returns the ids that were still queued."""
    return _move(session, request_ids, RequestStatus.QUEUED, RequestStatus.WAITING_BUDGET)


def release_held(session: Session, request_ids: Sequence[str]) -> list[str]:
    """waiting_budget → queued; returns the ids that were still waiting (not cancelled)."""
    return _move(session, request_ids, RequestStatus.WAITING_BUDGET, RequestStatus.QUEUED)


def _move(
    session: Session, request_ids: Sequence[str], old: RequestStatus, new: RequestStatus
) -> list[str]:
    if not request_ids:
        return []
    rows = session.execute(
        update(_R)
        .where(_R.c.id.in_(request_ids), _R.c.status == old)
        .values(status=new)
        .returning(_R.c.id)
    ).all()
    return [row.id for row in rows]


def cancel_job(session: Session, job_id: str) -> int:
    """Cancel a job's requests that have not started; running ones finish and are recorded."""
    now = utcnow()
    session.execute(
        update(_J)
        .where(_J.c.id == job_id, _J.c.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        .values(status=JobStatus.CANCELLING, cancel_requested_at=now)
    )
    rows = session.execute(
        update(_R)
        .where(_R.c.job_id == job_id, _R.c.status.in_(_CANCELLABLE))
        .values(status=RequestStatus.CANCELLED, finished_at=now)
        .returning(_R.c.id)
    ).all()
    ended = [RequestEnd(row.id, RequestStatus.CANCELLED) for row in rows]
    count_ended(session, job_id, cancelled=len(rows), ended=ended)
    return len(rows)


def expire_overdue(session: Session, now: datetime | None = None) -> dict[str, int]:
    """Requests of jobs past their completion window that never started → expired; the job
    ends once its running requests finish. Returns job id → requests expired."""
    now = now or utcnow()
    overdue = select(_J.c.id).where(
        _J.c.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)), _J.c.expires_at < now
    )
    rows = session.execute(
        update(_R)
        .where(_R.c.job_id.in_(overdue), _R.c.status.in_(_CANCELLABLE))
        .values(status=RequestStatus.EXPIRED, finished_at=now)
        .returning(_R.c.id, _R.c.job_id)
    ).all()
    per_job: dict[str, list[RequestEnd]] = {}
    for row in rows:
        per_job.setdefault(row.job_id, []).append(RequestEnd(row.id, RequestStatus.EXPIRED))
    for job_id in sorted(per_job):
        count_ended(session, job_id, expired=len(per_job[job_id]), ended=per_job[job_id])
    return {job_id: len(ends) for job_id, ends in per_job.items()}
