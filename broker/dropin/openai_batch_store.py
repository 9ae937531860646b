"""Reads and writes of OpenAI batches in the store: the jobs behind them, always per team.

A batch is found by deriving its job id (:func:`openai_batches.job_id_of`); a job of another
team, or one made through ``/v1/jobs`` (``surface`` is not ``openai``), is not found, with the
same words either way. A batch none of whose lines could be read has no requests to run; it is
still written as a job (no requests, ``surface_meta.failed``) so that it can be retrieved and
listed like any other, as OpenAI's ``failed`` batches can.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.dropin.openai_batches import SURFACE, job_id_of, render_file
from broker.errors import NotFound
from broker.ids import new_job_id
from broker.states import JobStatus, Priority
from broker.store import Job, Request, queries
from broker.store.models import utcnow

SessionFactory = Callable[[], AbstractContextManager[Session]]


def get_batch_job(session: Session, team_id: str, batch: str) -> Job:
    job_id = job_id_of(batch)
    job = session.get(Job, job_id) if job_id else None
    if job is None or job.team_id != team_id or job.surface != SURFACE:
        raise NotFound(f"no batch {batch!r} for this team")
    return job


def list_batch_jobs(
    session: Session, team_id: str, *, limit: int, after: str | None = None
) -> tuple[list[Job], bool]:
    """The team's batches, newest first, after the batch ``after``."""
    query = select(Job).where(Job.team_id == team_id, Job.surface == SURFACE)
    if after:
        cursor = get_batch_job(session, team_id, after)
        query = query.where(
            (Job.created_at < cursor.created_at)
            | ((Job.created_at == cursor.created_at) & (Job.id < cursor.id))
        )
    rows = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    return rows[:limit], len(rows) > limit


def cached_tokens(session: Session, job_ids: list[str]) -> dict[str, int]:
    """Cached input tokens per job (the job row keeps only the totals)."""
    if not job_ids:
        return {}
    rows = session.execute(
        select(Request.job_id, func.coalesce(func.sum(Request.cached_input_tokens), 0))
        .where(Request.job_id.in_(job_ids))
        .group_by(Request.job_id)
    ).all()
    return {job_id: int(total) for job_id, total in rows}


def add_failed_batch(
    session: Session, team_id: str, feature: str, meta: dict[str, Any]
) -> Job:
    """A batch with no readable line: a job with nothing to run, ended at once."""
    now = utcnow()
    job = Job(
        id=new_job_id(),
        team_id=team_id,
        feature=feature,
        priority=Priority.MEDIUM,
        status=JobStatus.COMPLETED,
        metadata_=meta.get("metadata"),
        n_total=0,  # the counters and totals start at their column defaults, 0
        created_at=now,
        started_at=now,
        finished_at=now,
        surface=SURFACE,
        surface_meta={**meta, "failed": True},
    )
    session.add(job)
    return job


def iter_file(session_factory: SessionFactory, job: Job, kind: str) -> Iterator[bytes]:
    """A generated file's lines, read from the results a page at a time."""
    rows = (row for row, _ in queries.iter_results(session_factory, job.id))
    yield from render_file(job, kind, rows)
