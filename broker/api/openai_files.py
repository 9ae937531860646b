"""``/v1/files``: the OpenAI Files API, as far as batches use it (DROPIN_REFERENCE.md §1).

Uploads (``purpose=batch``) are kept on disk under the API's data directory, listed from the
``files`` table. A batch's output and error files (``file-<job>-output``, ``-errors``,
``purpose=batch_output``) are not stored: retrieving them or their content renders them from
the job's results, so they are never out of date and cost no disk; they are not listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, StreamingResponse

from broker.api.auth import authenticate
from broker.api.errors import store_errors
from broker.api.resources import Resources
from broker.config.broker_toml import TeamConfig
from broker.dropin import files
from broker.dropin.openai_batch_store import get_batch_job, iter_file
from broker.dropin.openai_batches import batch_id, ended, generated_of
from broker.errors import InvalidRequest, NotFound
from broker.schemas.http import NulFree

router = APIRouter(prefix="/v1/files", tags=["openai"])
Team = Annotated[TeamConfig, Depends(authenticate)]


def files_dir(request: Request) -> Path:
    """Where uploads live: ``<data_dir>/files``, set on the app by its factory."""
    return request.app.state.files_dir


@router.post("")
def upload_file(
    request: Request,
    team: Team,
    resources: Resources,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
) -> dict:
    """Upload a batch input file (JSONL, up to 200 MB and 50,000 lines)."""
    if purpose not in files.PURPOSES:
        raise InvalidRequest(
            f"purpose: {purpose!r} is not supported by the broker; only 'batch' files can be "
            "uploaded",
            field="purpose",
        )
    file_id = files.new_file_id()
    directory = files_dir(request)
    saved = files.save(file.file, directory, file_id)
    try:
        with store_errors(), resources.db.session() as session:
            name = file.filename or "upload.jsonl"
            row = files.add_row(session, file_id, team.id, purpose, name, saved)
            return files.file_object(row)
    except BaseException:
        files.remove(directory, file_id)
        raise


@router.get("")
def list_files(
    team: Team,
    resources: Resources,
    after: Annotated[NulFree | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
    purpose: Annotated[NulFree | None, Query(max_length=32)] = None,
) -> dict:
    """The team's uploaded files by creation time; ``after`` is the last id of a page."""
    with store_errors(), resources.db.session() as session:
        rows, has_more = files.list_rows(
            session, team.id, limit=limit, after=after, order=order, purpose=purpose
        )
        data = [files.file_object(row) for row in rows]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _generated(resources, team: TeamConfig, file_id: str):
    """The job of an output or error file id, once it has ended; None for an upload's id."""
    found = generated_of(file_id)
    if found is None:
        return None
    job_id, kind = found
    with store_errors(), resources.db.session() as session:
        try:
            job = get_batch_job(session, team.id, batch_id(job_id))
        except NotFound:
            raise NotFound(f"no file {file_id!r} for this team") from None
    if not ended(job):
        raise NotFound(f"no file {file_id!r} for this team (its batch has not ended yet)")
    return job, kind


@router.get("/{file_id}")
def retrieve_file(file_id: NulFree, team: Team, resources: Resources) -> dict:
    generated = _generated(resources, team, file_id)
    if generated is not None:
        job, kind = generated
        size = sum(len(line) for line in iter_file(resources.db.session, job, kind))
        finished = int((job.finished_at or job.created_at).timestamp())
        return {
            "id": file_id,
            "object": "file",
            "bytes": size,
            "created_at": finished,
            "filename": f"batch_{job.id.removeprefix('job_')}_{kind}.jsonl",
            "purpose": "batch_output",
            "status": "processed",
            "expires_at": finished + int(files.EXPIRES_AFTER.total_seconds()),
            "status_details": None,
        }
    with store_errors(), resources.db.session() as session:
        return files.file_object(files.get_row(session, team.id, file_id))


@router.get("/{file_id}/content", responses={200: {"content": {"application/octet-stream": {}}}})
def file_content(file_id: NulFree, team: Team, resources: Resources, request: Request):
    """The file's bytes, streamed."""
    generated = _generated(resources, team, file_id)
    if generated is not None:
        job, kind = generated
        return StreamingResponse(
            iter_file(resources.db.session, job, kind), media_type="application/octet-stream"
        )
    with store_errors(), resources.db.session() as session:
        row = files.get_row(session, team.id, file_id)
    path = files.path_of(files_dir(request), row.id)
    if not path.exists():
        raise NotFound(f"the content of file {file_id!r} is gone")
    return FileResponse(path, media_type="application/octet-stream", filename=row.filename)


@router.delete("/{file_id}")
def delete_file(file_id: NulFree, team: Team, resources: Resources, request: Request) -> dict:
    if _generated(resources, team, file_id) is not None:
        raise InvalidRequest(
            f"{file_id!r} is generated from its batch's results and cannot be deleted",
            field="file_id",
        )
    with store_errors(), resources.db.session() as session:
        row = files.get_row(session, team.id, file_id)
        session.delete(row)
    files.remove(files_dir(request), file_id)
    return {"id": file_id, "object": "file", "deleted": True}
