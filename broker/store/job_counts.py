"""A job's counters and its end, moved in the transaction that ends its requests.

Every transition that ends requests (:mod:`broker.store.transitions`) adds them here: the
counters move, the job ends (completed, or cancelled if a cancel was asked) when nothing is left
pending, and the ended requests and the job's end go to the webhook outbox
(:mod:`broker.store.outbox`) if the job asked for them: one transaction, so an event is recorded
if and only if what it reports commits.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, case, update
from sqlalchemy.orm import Session

from broker.states import JobStatus
from broker.store import outbox
from broker.store.models import Job, utcnow
from broker.store.outbox import RequestEnd

_J = Job.__table__

_ADD_COUNTS = (
    update(_J)
    .where(_J.c.id == bindparam("b_job"))
    .values(
        n_succeeded=_J.c.n_succeeded + bindparam("b_succeeded"),
        n_failed=_J.c.n_failed + bindparam("b_failed"),
        n_cancelled=_J.c.n_cancelled + bindparam("b_cancelled"),
        n_expired=_J.c.n_expired + bindparam("b_expired"),
        input_tokens=_J.c.input_tokens + bindparam("b_input_tokens"),
        output_tokens=_J.c.output_tokens + bindparam("b_output_tokens"),
        cost_micros=_J.c.cost_micros + bindparam("b_cost_micros"),
        n_cache_hits=_J.c.n_cache_hits + bindparam("b_cache_hits"),
        cost_avoided_micros=_J.c.cost_avoided_micros + bindparam("b_cost_avoided_micros"),
    )
    .returning(_J.c.id, _J.c.team_id, _J.c.webhook_url, _J.c.webhook_events)
)
_END_IF_DONE = (
    update(_J)
    .where(
        _J.c.id == bindparam("b_job"),
        _J.c.n_succeeded + _J.c.n_failed + _J.c.n_cancelled + _J.c.n_expired == _J.c.n_total,
        _J.c.status.in_((JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.CANCELLING)),
    )
    .values(
        status=case(
            (_J.c.cancel_requested_at.is_not(None), JobStatus.CANCELLED.value),
            else_=JobStatus.COMPLETED.value,
        ),
        finished_at=bindparam("b_now"),
    )
    .returning(
        _J.c.id,
        _J.c.team_id,
        _J.c.status,
        _J.c.n_total,
        _J.c.n_succeeded,
        _J.c.n_failed,
        _J.c.n_cancelled,
        _J.c.n_expired,
        _J.c.cost_micros,
        _J.c.webhook_url,
        _J.c.webhook_events,
    )
)


def count_ended(
    session: Session,
    job_id: str,
    *,
    succeeded: int = 0,
    failed: int = 0,
    cancelled: int = 0,
    expired: int = 0,
    input_tokens: int = 0,
    output_tokens: int = 0,
    cost_micros: int = 0,
    cache_hits: int = 0,
    cost_avoided_micros: int = 0,
    ended: Sequence[RequestEnd] = (),
) -> None:
    """Add to a job's counters; end the job when nothing is left pending. The requests that
    ended (``ended``) and the job, when it ends, go to the webhook outbox if it asked.

    The statements are built once at import: this runs for every batch a worker records.
    """
    job = session.execute(
        _ADD_COUNTS,
        {
            "b_job": job_id,
            "b_succeeded": succeeded,
            "b_failed": failed,
            "b_cancelled": cancelled,
            "b_expired": expired,
            "b_input_tokens": input_tokens,
            "b_output_tokens": output_tokens,
            "b_cost_micros": cost_micros,
            "b_cache_hits": cache_hits,
            "b_cost_avoided_micros": cost_avoided_micros,
        },
    ).one_or_none()
    if job is not None and job.webhook_url:
        outbox.requests_finished(session, job, ended)
    finished = session.execute(_END_IF_DONE, {"b_job": job_id, "b_now": utcnow()}).one_or_none()
    if finished is not None and finished.webhook_url:
        outbox.job_finished(session, finished)
