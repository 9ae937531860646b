"""``/v1/jobs``: submit a batch, follow it, read its results, cancel it."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse

from broker.api.auth import authenticate
from broker.api.params import AfterSeq, BeforeJob, JobId
from broker.api.resources import Resources
from broker.api.views import job_out, result_out
from broker.config.broker_toml import TeamConfig
from broker.schemas.http import ErrorBody, JobCreate, JobList, JobOut, ResultsPage
from broker.store import queries, transitions

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
)
Team = Annotated[TeamConfig, Depends(authenticate)]


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses={413: {"model": ErrorBody}, 429: {"model": ErrorBody}},
)
def submit_job(body: JobCreate, team: Team, resources: Resources, request: Request) -> JobOut:
    """Submit a batch (up to the configured limit, 50,000 by default) for one feature; each key
    may submit ``submissions_per_minute`` batches a minute (60 by default)."""
    job = resources.submitter.submit(team, body, request.state.api_key_sha256)
    return job_out(job)


@router.get("", response_model=JobList)
def list_jobs(
    team: Team,
    resources: Resources,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    before: BeforeJob = None,
) -> JobList:
    """The team's jobs, newest first; pass the last id as ``before`` for the next page."""
    with resources.db.session() as session:
        jobs, has_more = queries.list_jobs(session, team.id, limit=limit, before=before)
        return JobList(data=[job_out(job) for job in jobs], has_more=has_more)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: JobId, team: Team, resources: Resources) -> JobOut:
    with resources.db.session() as session:
        return job_out(queries.get_job(session, team.id, job_id))


@router.get(
    "/{job_id}/results",
    response_model=ResultsPage,
    responses={200: {"content": {"application/x-ndjson": {}}}},
)
def get_results(
    job_id: JobId,
    team: Team,
    resources: Resources,
    after: AfterSeq = -1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    format: Annotated[Literal["json", "jsonl"], Query()] = "json",
):
    """Results in batch order: a page (``after``/``limit``), or all of them as JSON lines."""
    db = resources.db
    with db.session() as session:
        queries.get_job(session, team.id, job_id)
        if format == "json":
            rows, has_more = queries.result_page(session, job_id, after=after, limit=limit)
            calls = queries.calls_of(session, rows)
            return ResultsPage(
                data=[result_out(row, calls.get(row.id)) for row in rows],
                has_more=has_more,
                next_after=rows[-1].seq if has_more else None,
            )

    def lines():
        for row, calls in queries.iter_results(db.session, job_id):
            yield result_out(row, calls).model_dump_json() + "\n"

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: JobId, team: Team, resources: Resources) -> JobOut:
    """Stop queued requests at once; running ones finish and are recorded."""
    db = resources.db
    with db.session() as session:  # reads first, in their own transaction: 404 before writing
        queries.get_job(session, team.id, job_id)
    db.write(lambda session: transitions.cancel_job(session, job_id))  # retried on deadlock
    with db.session() as session:
        return job_out(queries.get_job(session, team.id, job_id))
