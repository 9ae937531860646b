"""Request and job state changes in the database, each a single conditional UPDATE.

Every transition names the state it comes from, so a stale actor (a redelivered task, a
second scheduler, a cancel racing a dispatch) changes nothing: exactly one writer wins and the
others see ``rowcount == 0``. A job's counters move in the same transaction as its requests,
and the job finishes in the transaction that ends its last request (:mod:`broker.store.job_counts`);
its webhook events are written to the outbox (:mod:`broker.store.outbox`) in that same
transaction.

Here: the scheduler's and the API's moves (dispatch, requeue and hand-back, failing what cannot
run, holding for budget, cancel, expiry). Claiming and finishing an attempt, the workers'
recording path, and the values that describe an attempt (:class:`Claimed`, :class:`Outcome`,
:class:`Call`, :class:`HandBack`) are in :mod:`broker.store.attempts`, re-exported here so
``from broker.store.transitions import ...`` names every transition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.orm import Session

from broker.states import JobStatus, RequestStatus
from broker.store.attempts import (
    Call,
    Claimed,
    HandBack,
    Outcome,
    call_rows,
    claim_many,
    finish_many,
    ledger_row,
)
from broker.store.job_counts import count_ended
from broker.store.models import Job, ProviderCall, Request, utcnow
from broker.store.outbox import RequestEnd

__all__ = [
    "Call",
    "Claimed",
    "Dispatched",
    "HandBack",
    "Outcome",
    "call_rows",
    "cancel_job",
    "claim_many",
    "expire_overdue",
    "fail_attempt",
    "fail_queued",
    "finish_many",
    "hand_back_many",
    "hold_for_budget",
    "ledger_row",
    "mark_dispatched",
    "release_held",
    "requeue",
]

_R, _J = Request.__table__, Job.__table__
_C = ProviderCall.__table__
_CANCELLABLE = (RequestStatus.QUEUED, RequestStatus.WAITING_BUDGET)


@dataclass(frozen=True, slots=True)
class Dispatched:
    request_id: str
    job_id: str
    attempt: int


# Built once: every scheduling round runs them, and building a statement (and its cache key)
# cost as much as running it (0.40 against 0.20 ms a one-request dispatch on SQLite).
_DISPATCH = (
    update(_R)
    .where(_R.c.id.in_(bindparam("b_ids", expanding=True)), _R.c.status == RequestStatus.QUEUED)
    .values(
        status=RequestStatus.DISPATCHED,
        attempts=_R.c.attempts + 1,
        dispatched_at=bindparam("b_now"),
    )
    .returning(_R.c.id, _R.c.job_id, _R.c.attempts)
)
_START_JOBS = (
    update(_J)
    .where(_J.c.id.in_(bindparam("b_jobs", expanding=True)), _J.c.status == JobStatus.QUEUED)
    .values(status=JobStatus.RUNNING, started_at=bindparam("b_now"))
)


def mark_dispatched(session: Session, request_ids: Sequence[str]) -> list[Dispatched]:
    """queued → dispatched for those still queued; starts their jobs. Returns the winners, in
    the order of ``request_ids`` (PostgreSQL's RETURNING has none of its own)."""
    if not request_ids:
        return []
    now = utcnow()
    rows = session.execute(_DISPATCH, {"b_ids": list(request_ids), "b_now": now}).all()
    job_ids = sorted({row.job_id for row in rows})
    if job_ids:
        session.execute(_START_JOBS, {"b_jobs": job_ids, "b_now": now})
    place = {rid: i for i, rid in enumerate(request_ids)}
    rows.sort(key=lambda row: place[row.id])
    return [Dispatched(row.id, row.job_id, row.attempts) for row in rows]


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
