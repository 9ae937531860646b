"""``/v1/messages/batches``: Anthropic's Message Batches API over the broker's jobs, so
``anthropic.Anthropic(base_url=<broker>).messages.batches`` (and ``client.beta.messages.batches``,
whose ``?beta=true`` and ``anthropic-beta`` header are accepted and ignored) work unchanged.

What a batch is and how it maps onto a job is in :mod:`broker.dropin.message_batches`; this
module is only the HTTP side. Errors take Anthropic's shape (:mod:`broker.api.errors`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import StringConstraints, ValidationError

from broker.api.auth import authenticate
from broker.api.params import JobId
from broker.api.resources import Resources
from broker.config.broker_toml import TeamConfig
from broker.dropin import idempotency
from broker.dropin import message_batches as mb
from broker.dropin.wire import FEATURE_HEADER, feature_of
from broker.errors import InvalidRequest, PayloadTooLarge
from broker.schemas.http import ErrorBody, JobCreate, NulFree
from broker.store import queries, transitions

router = APIRouter(
    prefix="/v1/messages/batches",
    tags=["anthropic"],
    responses={
        400: {"model": ErrorBody},
        401: {"model": ErrorBody},
        404: {"model": ErrorBody},
        422: {"model": ErrorBody},
    },
)
Team = Annotated[TeamConfig, Depends(authenticate)]
BatchCursor = Annotated[
    Annotated[str, StringConstraints(max_length=64), *NulFree.__metadata__] | None,
    Query(description="A batch id from the previous page (first_id or last_id)."),
]


def _base_url(request: Request) -> str:
    """The broker as this caller reached it: results_url must point here, never upstream."""
    return str(request.base_url)


def _render(resources: Resources, team: TeamConfig, batch: str, request: Request) -> dict:
    with resources.db.session() as session:
        return mb.batch_object(mb.get_batch(session, team.id, batch), _base_url(request))


@router.post("", responses={413: {"model": ErrorBody}, 429: {"model": ErrorBody}})
def create_batch(
    body: mb.BatchCreateIn, team: Team, resources: Resources, request: Request
) -> dict[str, Any]:
    """Create a message batch. Invalid requests end as ``errored`` results instead of
    failing the create (see :mod:`broker.dropin.message_batches`); ``Idempotency-Key``
    makes a retried create return the first batch."""
    limit = resources.submitter.max_batch_size
    if len(body.requests) > limit:
        raise PayloadTooLarge(
            f"requests: the batch has {len(body.requests)} requests; this broker's limit is "
            f"{limit} per batch: split it",
            field="requests",
        )

    def create() -> str:
        valid, errors = mb.parse_requests(body.requests, resources.config)
        try:
            batch = JobCreate(
                feature=feature_of(request.headers, None), completion_window="24h", requests=valid
            )
        except ValidationError as exc:
            raise InvalidRequest(
                f"{FEATURE_HEADER}: {exc.errors()[0].get('msg')}", field=FEATURE_HEADER
            ) from exc
        meta = {"n_requests": len(body.requests), "errors": errors}
        job = resources.submitter.submit(
            team,
            batch,
            request.state.api_key_sha256,
            surface=mb.SURFACE,
            surface_meta=meta,
        )
        return mb.batch_id(job.id)

    key = request.headers.get(idempotency.HEADER)
    batch, _ = idempotency.once(resources.redis, team.id, mb.SURFACE, key, create)
    return _render(resources, team, batch, request)


@router.get("")
def list_batches(
    team: Team,
    resources: Resources,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
    before_id: BatchCursor = None,
    after_id: BatchCursor = None,
) -> dict[str, Any]:
    """The team's message batches, newest first; page with ``after_id`` (older) or
    ``before_id`` (newer)."""
    if before_id is not None and after_id is not None:
        raise InvalidRequest("send before_id or after_id, not both", field="before_id")
    base = _base_url(request)
    with resources.db.session() as session:
        jobs, has_more = mb.list_batches(
            session, team.id, limit=limit, before_id=before_id, after_id=after_id
        )
        data = [mb.batch_object(job, base) for job in jobs]
    return {
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


@router.get("/{batch_id}")
def retrieve_batch(
    batch_id: JobId, team: Team, resources: Resources, request: Request
) -> dict[str, Any]:
    return _render(resources, team, batch_id, request)


@router.post("/{batch_id}/cancel")
def cancel_batch(
    batch_id: JobId, team: Team, resources: Resources, request: Request
) -> dict[str, Any]:
    """Queued requests end as canceled at once; running ones finish (``canceling``)."""
    db = resources.db
    with db.session() as session:  # 404 before writing
        job_id = mb.get_batch(session, team.id, batch_id).id
    db.write(lambda session: transitions.cancel_job(session, job_id))
    return _render(resources, team, batch_id, request)


@router.delete("/{batch_id}")
def delete_batch(batch_id: JobId, team: Team, resources: Resources) -> dict[str, Any]:
    """Only once processing has ended. The rows stay (the cost ledger and reports need
    them); the batch is marked deleted and is not found afterwards."""
    resources.db.write(lambda session: mb.mark_deleted(session, team.id, batch_id))
    return {"id": batch_id, "type": "message_batch_deleted"}


@router.get(
    "/{batch_id}/results",
    responses={200: {"content": {"application/x-jsonl": {}}}},
)
def batch_results(batch_id: JobId, team: Team, resources: Resources) -> StreamingResponse:
    """The results as JSON lines, one per request, once processing has ended."""
    db = resources.db
    with db.session() as session:
        job = mb.get_batch(session, team.id, batch_id)
        if not mb.is_ended(job):
            raise InvalidRequest(
                f"message batch {batch_id!r} is still {mb.processing_status(job)}; results are "
                "available once processing_status is ended"
            )
        session.expunge(job)  # read after the session, for the refused requests
    rows = (row for row, _ in queries.iter_results(db.session, job.id))
    return StreamingResponse(mb.result_lines(rows, job), media_type="application/x-jsonl")
