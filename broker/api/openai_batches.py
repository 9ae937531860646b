"""``/v1/batches``: the OpenAI Batch API over broker jobs (DROPIN_REFERENCE.md §2).

Creating a batch reads the uploaded file line by line, twice (a file of 200 MB is never held
whole): the first pass checks each line, the second streams the good ones into one job through
the same :class:`Submitter` as ``/v1/jobs`` (same limits, budgets, cache and fair scheduling);
the bad ones are recorded on the job and reported in its error file.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ValidationError

from broker.api.auth import authenticate
from broker.api.errors import store_errors
from broker.api.openai_files import files_dir
from broker.api.resources import ApiResources, Resources
from broker.config.broker_toml import TeamConfig
from broker.dropin import files, idempotency
from broker.dropin import openai_batch_store as store
from broker.dropin.openai_batches import (
    READERS,
    SURFACE,
    WINDOW,
    Parsed,
    batch_id,
    batch_object,
    read_lines,
    too_many_inputs,
)
from broker.dropin.wire import feature_of
from broker.errors import InvalidRequest
from broker.schemas.http import JobCreate, NulFree, RequestIn
from broker.store import transitions
from broker.store.models import utcnow
from broker.submission import Stream, payload_of, tokens_of

router = APIRouter(prefix="/v1/batches", tags=["openai"])
Team = Annotated[TeamConfig, Depends(authenticate)]


class BatchCreate(BaseModel):
    """``POST /v1/batches``'s body."""

    input_file_id: NulFree
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None
    output_expires_after: dict | None = None


def _check(body: BatchCreate) -> None:
    if body.completion_window != WINDOW:
        raise InvalidRequest(
            f"completion_window: only '24h' is supported, not {body.completion_window!r}",
            field="completion_window",
        )
    if body.endpoint not in READERS:
        raise InvalidRequest(
            f"endpoint: {body.endpoint!r} is not supported; the broker runs "
            f"{' and '.join(READERS)} batches",
            field="endpoint",
        )
    if body.metadata and len(body.metadata) > 16:
        raise InvalidRequest("metadata: at most 16 pairs", field="metadata")


def _create(body: BatchCreate, team: TeamConfig, resources: ApiResources, request: Request) -> str:
    """Read the input file, submit its good lines; the new batch's id."""
    with store_errors(), resources.db.session() as session:
        row = files.get_row(session, team.id, body.input_file_id)
    if row.purpose != "batch":
        raise InvalidRequest(
            f"input_file_id: {body.input_file_id!r} has purpose {row.purpose!r}, not 'batch'",
            field="input_file_id",
        )
    feature = feature_of(request.headers, body.metadata)
    try:
        JobCreate(feature=feature, requests=[])
    except ValidationError:
        raise InvalidRequest(
            f"feature {feature!r} (x-broker-feature or metadata.feature): lowercase letters, "
            "digits, '_', '.' and '-', up to 64 characters",
            field="metadata.feature",
        ) from None
    submitter = resources.submitter

    def check(one: RequestIn) -> None:
        try:
            submitter.validate(JobCreate(feature=feature, requests=[one]))
        except InvalidRequest as exc:
            field = (exc.field or "").replace("requests[0].", "body.") or None
            raise InvalidRequest(exc.message.replace(" at requests[0]", ""), field=field) from exc

    path = files.path_of(files_dir(request), row.id)
    if not path.exists():
        raise InvalidRequest(
            f"input_file_id: the content of {row.id!r} is gone", field="input_file_id"
        )
    # Two passes over the file, never all of it in memory: the first checks every line and
    # counts (the error file, admission); the second reads the good lines into the job.
    bad, good, models, tokens, inputs = Parsed(), [], set(), 0, 0
    for number, one in read_lines(files.iter_lines(path), body.endpoint, check, bad.fail):
        good.append(number)
        models.add(one.model)
        tokens += tokens_of(one, payload_of(one))
        inputs += len(one.input or ())
    if (too_many := too_many_inputs(inputs)) is not None:  # the batch fails, as OpenAI's does
        bad.errors.insert(0, too_many)
        good.clear()
    meta = {
        "endpoint": body.endpoint,
        "input_file_id": body.input_file_id,
        "completion_window": body.completion_window,
        "metadata": body.metadata,
        "errors": bad.errors,
        "model": next(iter(models)) if len(models) == 1 else None,
    }
    if not good:
        with store_errors(), resources.db.session() as session:
            meta["created"] = int(utcnow().timestamp())
            return batch_id(store.add_failed_batch(session, team.id, feature, meta).id)
    meta["created"] = int(utcnow().timestamp())
    wanted = set(good)
    lines = ((n, line) for n, line in files.iter_lines(path) if n in wanted)
    job = submitter.submit_stream(
        team,
        JobCreate(feature=feature, requests=[], metadata=body.metadata),
        Stream(len(good), tokens, (one for _, one in read_lines(lines, body.endpoint))),
        request.state.api_key_sha256,
        surface=SURFACE,
        surface_meta=meta,
    )
    return batch_id(job.id)


def _render(resources: ApiResources, team_id: str, batch: str) -> dict:
    with store_errors(), resources.db.session() as session:
        job = store.get_batch_job(session, team_id, batch)
        cached = store.cached_tokens(session, [job.id])
    return batch_object(job, cached.get(job.id, 0))


@router.post("")
def create_batch(body: BatchCreate, team: Team, resources: Resources, request: Request) -> dict:
    """Create a batch from an uploaded ``purpose=batch`` file; lines that cannot run fail
    alone (they are in the error file). ``Idempotency-Key`` makes retries return one batch."""
    _check(body)
    with store_errors():
        made, _ = idempotency.once(
            resources.redis,
            team.id,
            "openai-batch",
            request.headers.get(idempotency.HEADER),
            lambda: _create(body, team, resources, request),
        )
    return _render(resources, team.id, made)


@router.get("")
def list_batches(
    team: Team,
    resources: Resources,
    after: Annotated[NulFree | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict:
    """The team's batches, newest first; ``after`` is the last id of the previous page."""
    with store_errors(), resources.db.session() as session:
        jobs, has_more = store.list_batch_jobs(session, team.id, limit=limit, after=after)
        cached = store.cached_tokens(session, [job.id for job in jobs])
    data = [batch_object(job, cached.get(job.id, 0)) for job in jobs]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


@router.get("/{batch_id}")
def retrieve_batch(batch_id: NulFree, team: Team, resources: Resources) -> dict:
    return _render(resources, team.id, batch_id)


@router.post("/{batch_id}/cancel")
def cancel_batch(batch_id: NulFree, team: Team, resources: Resources) -> dict:
    """Queued requests are cancelled at once; running ones finish and are recorded."""
    db = resources.db
    with store_errors(), db.session() as session:  # 404 before writing
        job = store.get_batch_job(session, team.id, batch_id)
    with store_errors():
        db.write(lambda session: transitions.cancel_job(session, job.id))
    return _render(resources, team.id, batch_id)
