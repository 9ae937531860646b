"""Reads for the API, always scoped to one team: another team's job is simply not found."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.errors import NotFound
from broker.store.models import Job, ProviderCall, Request


def get_job(session: Session, team_id: str, job_id: str) -> Job:
    job = session.get(Job, job_id)
    if job is None or job.team_id != team_id:
        raise NotFound(f"no job {job_id!r} for this team")
    return job


def list_jobs(
    session: Session, team_id: str, *, limit: int, before: str | None = None
) -> tuple[list[Job], bool]:
    query = select(Job).where(Job.team_id == team_id)
    if before:
        cursor = get_job(session, team_id, before)
        query = query.where(
            (Job.created_at < cursor.created_at)
            | ((Job.created_at == cursor.created_at) & (Job.id < cursor.id))
        )
    jobs = list(
        session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1))
    )
    return jobs[:limit], len(jobs) > limit


def result_page(
    session: Session, job_id: str, *, after: int = -1, limit: int = 1000
) -> tuple[list[Request], bool]:
    """Requests of a job in batch order, keyset-paginated on their position."""
    rows = list(
        session.scalars(
            select(Request)
            .where(Request.job_id == job_id, Request.seq > after)
            .order_by(Request.seq)
            .limit(limit + 1)
        )
    )
    return rows[:limit], len(rows) > limit


def calls_of(session: Session, requests: list[Request]) -> dict[str, list[ProviderCall]]:
    """The provider calls of these requests, in the order they were made, by request id."""
    ids = [r.id for r in requests if r.attempts]
    calls: dict[str, list[ProviderCall]] = {}
    if not ids:
        return calls
    rows = session.scalars(
        select(ProviderCall)
        .where(ProviderCall.request_id.in_(ids))
        .order_by(ProviderCall.request_id, ProviderCall.attempt, ProviderCall.try_)
    )
    for call in rows:
        calls.setdefault(call.request_id, []).append(call)
    return calls


def iter_results(
    session_factory, job_id: str, page_size: int = 2000
) -> Iterator[tuple[Request, list[ProviderCall]]]:
    """All requests of a job with their calls, one short transaction per page (for JSONL)."""
    after = -1
    while True:
        with session_factory() as session:
            rows, has_more = result_page(session, job_id, after=after, limit=page_size)
            calls = calls_of(session, rows)
        for row in rows:
            yield row, calls.get(row.id, [])
        if not has_more or not rows:
            return
        after = rows[-1].seq
