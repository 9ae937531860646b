"""Anthropic Message Batches ⇄ the broker's jobs (DROPIN_REFERENCE.md §3).

A message batch is a job with ``surface == "anthropic"``; its id is the job's with the
``msgbatch_`` prefix, so nothing else needs storing to find it again.

Validation differs from Anthropic's on purpose. Anthropic refuses the whole create when one
request is invalid; the broker submits the valid ones and reports each invalid request (a
wrong field, ``stream: true``, an unknown model) as an ``errored`` result for its custom_id,
so one bad line in 50,000 does not cost the other 49,999 a round trip. Those errors live in
the job's ``surface_meta`` (they have no request row) and count as ``errored`` in
``request_counts``. What cannot be reported per request fails the create: a duplicate
custom_id (results are keyed by it), or a batch with no valid request at all.

Deleting keeps the rows: the cost ledger cascades from the requests, and budgets and reports
are rebuilt from the ledger, so a deleted batch is only marked (``surface_meta.deleted_at``)
and is not found afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from broker.config.broker_toml import BrokerConfig
from broker.dropin.anthropic_wire import message, message_request
from broker.errors import InvalidRequest, NotFound
from broker.schemas.http import RequestIn
from broker.states import JobStatus, RequestStatus
from broker.store import Job, Request
from broker.submission import unhonoured

SURFACE = "anthropic"
PREFIX = "msgbatch_"
MAX_REQUESTS = 100_000
EXPIRES_AFTER = timedelta(hours=24)
CUSTOM_ID = r"^[a-zA-Z0-9_-]{1,64}$"

# A failed request's stored error code → the Anthropic error type its result carries.
ERROR_TYPES = {
    "context_window_exceeded": "invalid_request_error",
    "provider_rejected": "invalid_request_error",
    "rate_limited": "rate_limit_error",
    "provider_unavailable": "overloaded_error",
    "circuit_open": "overloaded_error",
}


class BatchRequestIn(BaseModel):
    """One request of a create: Anthropic's ``MessageBatchRequest``."""

    custom_id: Annotated[str, Field(min_length=1, max_length=64, pattern=CUSTOM_ID)]
    params: dict[str, Any] = Field(description="A Messages create body (without stream).")


class BatchCreateIn(BaseModel):
    """``POST /v1/messages/batches``."""

    requests: list[BatchRequestIn] = Field(min_length=1, max_length=MAX_REQUESTS)


def batch_id(job_id: str) -> str:
    return PREFIX + job_id.removeprefix("job_")


def job_id_of(batch: str) -> str:
    """The job a batch id names; 404 for anything that is not a message batch id."""
    if not batch.startswith(PREFIX) or len(batch) == len(PREFIX):
        raise NotFound(f"no message batch {batch!r}")
    return "job_" + batch.removeprefix(PREFIX)


def _invalid(custom_id: str, kind: str, text: str) -> dict[str, str]:
    return {"custom_id": custom_id, "type": kind, "message": text}


def _model_error(config: BrokerConfig, request: RequestIn, where: str) -> dict[str, str] | None:
    """What :meth:`Submitter.validate` would refuse the whole batch for, for this request."""
    model = request.model
    if model is None:
        return _invalid(request.custom_id, "invalid_request_error", f"{where}model: required")
    if config.route(model) is not None:
        return None  # a route (virtual model): resolved to a catalog model at submission
    if not config.has_model(model):
        known = ", ".join(config.model_names())
        text = f"{where}model: unknown model {model!r}; known models: {known}"
        return _invalid(request.custom_id, "not_found_error", text)
    if reason := config.wrong_kind(model, "chat"):
        return _invalid(request.custom_id, "invalid_request_error", f"{where}model: {reason}")
    limit = config.model(model).max_output
    if request.max_tokens > limit:
        text = f"{where}max_tokens: {request.max_tokens} is over {model}'s limit of {limit}"
        return _invalid(request.custom_id, "invalid_request_error", text)
    if (refused := unhonoured(config, model, request)) is not None:
        text = f"{where}{refused.param}: cannot go to model {model!r}: {refused.reason}"
        return _invalid(request.custom_id, "invalid_request_error", text)
    return None


def parse_requests(
    requests: list[BatchRequestIn], config: BrokerConfig
) -> tuple[list[RequestIn], list[dict[str, str]]]:
    """The valid requests, and an error (custom_id, Anthropic type, message) for each other.

    400 for the whole create on a duplicate custom_id or when no request is valid."""
    seen: set[str] = set()
    for i, item in enumerate(requests):
        if item.custom_id in seen:
            raise InvalidRequest(
                f"requests[{i}].custom_id: duplicate custom_id {item.custom_id!r}; each request "
                "of a batch needs its own",
                field=f"requests[{i}].custom_id",
            )
        seen.add(item.custom_id)
    valid: list[RequestIn] = []
    errors: list[dict[str, str]] = []
    for i, item in enumerate(requests):
        where = f"requests[{i}].params."
        if item.params.get("stream"):
            text = f"{where}stream: streaming is not supported inside a message batch"
            errors.append(_invalid(item.custom_id, "invalid_request_error", text))
            continue
        try:
            request = message_request(item.params, item.custom_id, where=where)
        except InvalidRequest as exc:
            errors.append(_invalid(item.custom_id, "invalid_request_error", exc.message))
            continue
        error = _model_error(config, request, where)
        if error is not None:
            errors.append(error)
        else:
            valid.append(request)
    if not valid:
        first = errors[0]
        raise InvalidRequest(
            f"none of the {len(requests)} requests is valid; the first "
            f"({first['custom_id']!r}): {first['message']}",
            field="requests",
        )
    return valid, errors


def rfc3339(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def is_ended(job: Job) -> bool:
    return JobStatus(job.status).is_terminal


def processing_status(job: Job) -> str:
    if is_ended(job):
        return "ended"
    return "canceling" if job.status == JobStatus.CANCELLING else "in_progress"


def invalid_of(job: Job) -> list[dict[str, str]]:
    return list((job.surface_meta or {}).get("errors") or [])


def request_counts(job: Job) -> dict[str, int]:
    """Live counts; their sum is the number of requests the create sent (invalid ones
    included, as ``errored``)."""
    return {
        "processing": job.n_total - job.n_done,
        "succeeded": job.n_succeeded,
        "errored": job.n_failed + len(invalid_of(job)),
        "canceled": job.n_cancelled,
        "expired": job.n_expired,
    }


def results_path(batch: str) -> str:
    return f"/v1/messages/batches/{batch}/results"


def batch_object(job: Job, base_url: str) -> dict[str, Any]:
    """The ``MessageBatch`` the SDK validates. ``results_url`` is absolute on ``base_url``
    (the broker as the caller reached it): the SDK sends the caller's key wherever it points."""
    ended = is_ended(job)
    bid = batch_id(job.id)
    return {
        "id": bid,
        "type": "message_batch",
        "processing_status": processing_status(job),
        "request_counts": request_counts(job),
        "created_at": rfc3339(job.created_at),
        "expires_at": rfc3339(job.created_at + EXPIRES_AFTER),
        "ended_at": rfc3339(job.finished_at or job.created_at) if ended else None,
        "cancel_initiated_at": rfc3339(job.cancel_requested_at),
        "archived_at": None,
        "results_url": base_url.rstrip("/") + results_path(bid) if ended else None,
    }


def error_type(code: str | None) -> str:
    return ERROR_TYPES.get(code or "", "api_error")


def _errored(custom_id: str, kind: str, text: str) -> dict[str, Any]:
    error = {"type": "error", "error": {"type": kind, "message": text}, "request_id": None}
    return {"custom_id": custom_id, "result": {"type": "errored", "error": error}}


def result_of(row: Request) -> dict[str, Any]:
    """One finished request as a ``MessageBatchIndividualResponse``."""
    status = row.status
    if status == RequestStatus.SUCCEEDED:
        answer = message(row)
        answer["usage"] = {**answer["usage"], "service_tier": "batch"}
        return {"custom_id": row.custom_id, "result": {"type": "succeeded", "message": answer}}
    if status == RequestStatus.CANCELLED:
        return {"custom_id": row.custom_id, "result": {"type": "canceled"}}
    if status == RequestStatus.EXPIRED:
        return {"custom_id": row.custom_id, "result": {"type": "expired"}}
    if status == RequestStatus.FAILED:
        text = row.error or row.error_code or "the request failed"
        return _errored(row.custom_id, error_type(row.error_code), text)
    return _errored(row.custom_id, "api_error", f"the request is still {status}")


def result_lines(rows: Iterator[Request], job: Job) -> Iterator[str]:
    """The results JSONL: every request row, then the requests refused at create."""
    for row in rows:
        yield json.dumps(result_of(row), separators=(",", ":")) + "\n"
    for error in invalid_of(job):
        line = _errored(error["custom_id"], error["type"], error["message"])
        yield json.dumps(line, separators=(",", ":")) + "\n"


# Store access: batches are jobs of this surface, scoped to one team; deleted ones are gone.


def is_deleted(job: Job) -> bool:
    return bool((job.surface_meta or {}).get("deleted_at"))


def get_batch(session: Session, team_id: str, batch: str) -> Job:
    """The team's message batch; 404 for another team's, a deleted one or a plain job."""
    job = session.get(Job, job_id_of(batch))
    if job is None or job.team_id != team_id or job.surface != SURFACE or is_deleted(job):
        raise NotFound(f"no message batch {batch!r} for this team")
    return job


def mark_deleted(session: Session, team_id: str, batch: str) -> None:
    """Mark an ended batch deleted; 400 while it is still processing."""
    job = get_batch(session, team_id, batch)
    if not is_ended(job):
        raise InvalidRequest(
            f"message batch {batch!r} is still {processing_status(job)}; cancel it first and "
            "wait until processing_status is ended before deleting it"
        )
    job.surface_meta = {**(job.surface_meta or {}), "deleted_at": rfc3339(datetime.now(UTC))}


def list_batches(
    session: Session,
    team_id: str,
    *,
    limit: int,
    before_id: str | None = None,
    after_id: str | None = None,
    chunk: int = 500,
) -> tuple[list[Job], bool]:
    """The team's batches newest first: the ``limit`` older than ``after_id``, or the
    ``limit`` newer than ``before_id``; and whether there are more that way."""
    newer = before_id is not None
    cursor_id = before_id if newer else after_id
    query = select(Job).where(Job.team_id == team_id, Job.surface == SURFACE)
    if newer:
        order = (Job.created_at.asc(), Job.id.asc())
    else:
        order = (Job.created_at.desc(), Job.id.desc())
    key: tuple[datetime, str] | None = None
    if cursor_id is not None:
        cursor = get_batch(session, team_id, cursor_id) if cursor_id else None
        key = (cursor.created_at, cursor.id) if cursor is not None else None
    found: list[Job] = []
    while True:
        page = query
        if key is not None:
            at, jid = key
            if newer:
                page = page.where((Job.created_at > at) | ((Job.created_at == at) & (Job.id > jid)))
            else:
                page = page.where((Job.created_at < at) | ((Job.created_at == at) & (Job.id < jid)))
        rows = list(session.scalars(page.order_by(*order).limit(chunk)))
        found.extend(job for job in rows if not is_deleted(job))
        if len(found) > limit or len(rows) < chunk:
            break
        key = (rows[-1].created_at, rows[-1].id)
    jobs, has_more = found[:limit], len(found) > limit
    return (jobs[::-1] if newer else jobs), has_more
