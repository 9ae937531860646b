"""Request and job state changes in the database, each a single conditional UPDATE.

Every transition names the state it comes from, so a stale actor (a redelivered task, a
second scheduler, a cancel racing a dispatch) changes nothing: exactly one writer wins and the
others see ``rowcount == 0``. A job's counters move in the same transaction as its requests,
and the job finishes in the transaction that ends its last request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, insert, update
from sqlalchemy.orm import Session

from broker.store.models import Job, LedgerEntry, Request, utcnow
from broker.states import JobStatus, RequestStatus

_CANCELLABLE = (RequestStatus.QUEUED, RequestStatus.WAITING_BUDGET)


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


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an attempt produced; ``error_code`` set means it failed."""

    model: str
    provider: str
    latency_ms: int
    output: str | None = None
    finish_reason: str | None = None
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    error_code: str | None = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        return self.error_code is None


def mark_dispatched(session: Session, request_ids: Sequence[str]) -> list[Dispatched]:
    """queued → dispatched for those still queued; starts their jobs. Returns the winners."""
    if not request_ids:
        return []
    now = utcnow()
    rows = session.execute(
        update(Request)
        .where(Request.id.in_(request_ids), Request.status == RequestStatus.QUEUED)
        .values(status=RequestStatus.DISPATCHED, attempts=Request.attempts + 1, dispatched_at=now)
        .returning(Request.id, Request.job_id, Request.attempts)
    ).all()
    job_ids = {row.job_id for row in rows}
    if job_ids:
        session.execute(
            update(Job)
            .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=now)
        )
    return [Dispatched(row.id, row.job_id, row.attempts) for row in rows]


def claim(session: Session, request_id: str, attempt: int) -> Claimed | None:
    """dispatched → running for this attempt; None if the attempt is stale or was cancelled."""
    row = session.execute(
        update(Request)
        .where(
            Request.id == request_id,
            Request.attempts == attempt,
            Request.status == RequestStatus.DISPATCHED,
        )
        .values(status=RequestStatus.RUNNING, started_at=utcnow())
        .returning(
            Request.job_id, Request.team_id, Request.feature, Request.model, Request.payload
        )
    ).one_or_none()
    if row is None:
        return None
    return Claimed(request_id, row.job_id, row.team_id, row.feature, row.model, attempt, row.payload)


def finish(session: Session, claimed: Claimed, outcome: Outcome) -> bool:
    """running → succeeded/failed, the ledger row and the job's counters, all or nothing.

    Returns False (and writes nothing) when this attempt was already finished, so a
    redelivered task can neither record nor charge twice.
    """
    status = RequestStatus.SUCCEEDED if outcome.succeeded else RequestStatus.FAILED
    result = session.execute(
        update(Request)
        .where(
            Request.id == claimed.request_id,
            Request.attempts == claimed.attempt,
            Request.status == RequestStatus.RUNNING,
        )
        .values(
            status=status,
            model_used=outcome.model,
            provider_used=outcome.provider,
            output=outcome.output,
            finish_reason=outcome.finish_reason,
            input_tokens=outcome.input_tokens,
            cached_input_tokens=outcome.cached_input_tokens,
            output_tokens=outcome.output_tokens,
            cost_micros=outcome.cost_micros,
            latency_ms=outcome.latency_ms,
            error_code=outcome.error_code,
            error=outcome.error,
            finished_at=utcnow(),
        )
    )
    if result.rowcount != 1:
        return False
    if outcome.succeeded:
        session.execute(
            insert(LedgerEntry).values(
                request_id=claimed.request_id,
                attempt=claimed.attempt,
                job_id=claimed.job_id,
                team_id=claimed.team_id,
                feature=claimed.feature,
                model=outcome.model,
                provider=outcome.provider,
                input_tokens=outcome.input_tokens,
                cached_input_tokens=outcome.cached_input_tokens,
                output_tokens=outcome.output_tokens,
                cost_micros=outcome.cost_micros,
            )
        )
    _count(
        session,
        claimed.job_id,
        succeeded=int(outcome.succeeded),
        failed=int(not outcome.succeeded),
        input_tokens=outcome.input_tokens + outcome.cached_input_tokens,
        output_tokens=outcome.output_tokens,
        cost_micros=outcome.cost_micros,
    )
    return True


def fail_queued(session: Session, request_id: str, *, code: str, message: str) -> bool:
    """queued → failed without an attempt (it could not be dispatched at all)."""
    row = session.execute(
        update(Request)
        .where(Request.id == request_id, Request.status.in_(_CANCELLABLE))
        .values(status=RequestStatus.FAILED, error_code=code, error=message, finished_at=utcnow())
        .returning(Request.job_id)
    ).one_or_none()
    if row is None:
        return False
    _count(session, row.job_id, failed=1)
    return True


def cancel_job(session: Session, job_id: str) -> int:
    """Cancel a job's requests that have not started; running ones finish and are recorded."""
    now = utcnow()
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
        .values(status=JobStatus.CANCELLING, cancel_requested_at=now)
    )
    cancelled = session.execute(
        update(Request)
        .where(Request.job_id == job_id, Request.status.in_(_CANCELLABLE))
        .values(status=RequestStatus.CANCELLED, finished_at=now)
    ).rowcount
    _count(session, job_id, cancelled=cancelled)
    return cancelled


def _count(
    session: Session,
    job_id: str,
    *,
    succeeded: int = 0,
    failed: int = 0,
    cancelled: int = 0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_micros: int = 0,
) -> None:
    """Add to a job's counters; finish the job when nothing is left pending."""
    done = Job.n_succeeded + Job.n_failed + Job.n_cancelled + Job.n_expired
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(
            n_succeeded=Job.n_succeeded + succeeded,
            n_failed=Job.n_failed + failed,
            n_cancelled=Job.n_cancelled + cancelled,
            input_tokens=Job.input_tokens + input_tokens,
            output_tokens=Job.output_tokens + output_tokens,
            cost_micros=Job.cost_micros + cost_micros,
        )
    )
    session.execute(
        update(Job)
        .where(
            Job.id == job_id,
            done == Job.n_total,
            Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING)),
        )
        .values(
            status=case(
                (Job.cancel_requested_at.is_not(None), JobStatus.CANCELLED.value),
                else_=JobStatus.COMPLETED.value,
            ),
            finished_at=utcnow(),
        )
    )
