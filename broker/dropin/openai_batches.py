"""OpenAI Batches ⇄ broker jobs: input lines in, ``batch`` objects and result lines out.

A batch is a job (``surface="openai"``) whose id is the job's with another prefix, so no table
of its own is needed; what OpenAI returns and the job does not hold (endpoint, input file, the
lines that could not be read) is kept in ``job.surface_meta``. A bad input line fails that
line only (it goes to the error file and counts as failed), as OpenAI's per-request errors do;
a file with no good line at all makes a ``failed`` batch with ``errors``. Output and error
files are not stored: they are rendered from the job's results each time they are read
(DROPIN_REFERENCE.md §2).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from broker.dropin.embeddings_wire import embeddings_request, embeddings_response, is_embedding
from broker.dropin.openai_wire import chat_completion, chat_request
from broker.errors import InvalidRequest
from broker.schemas.http import RequestIn
from broker.states import JobStatus, RequestStatus
from broker.store import Job, Request

SURFACE = "openai"
ENDPOINT = "/v1/chat/completions"
#: Endpoint → the reader of its lines' bodies.
READERS: dict[str, Callable[..., RequestIn]] = {
    ENDPOINT: chat_request,
    "/v1/embeddings": embeddings_request,
}
WINDOW = "24h"
WINDOW_S = 24 * 3600
MESSAGE_MAX = 1000
MAX_EMBEDDING_INPUTS = 50_000
"""Embedding inputs in all the requests of one ``/v1/embeddings`` batch, as OpenAI's."""


def batch_id(job_id: str) -> str:
    return "batch_" + job_id.removeprefix("job_")


def job_id_of(batch: str) -> str | None:
    """The job behind a batch id; None for what cannot be one."""
    if not batch.startswith("batch_") or len(batch) > 60:
        return None
    return "job_" + batch.removeprefix("batch_")


def output_file_id(job_id: str, kind: str) -> str:
    """``kind``: ``output`` or ``errors``."""
    return f"file-{job_id.removeprefix('job_')}-{kind}"


def generated_of(file_id: str) -> tuple[str, str] | None:
    """``(job id, kind)`` of an output or error file id; None for any other id."""
    for kind in ("output", "errors"):
        suffix = f"-{kind}"
        if file_id.startswith("file-") and file_id.endswith(suffix):
            hexpart = file_id[len("file-") : -len(suffix)]
            if hexpart and len(hexpart) <= 40:
                return "job_" + hexpart, kind
    return None


@dataclass
class Parsed:
    """The good lines as broker requests, and what was wrong with the others."""

    requests: list[RequestIn] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, line: int, custom_id: Any, code: str, message: str, param: str | None) -> None:
        self.errors.append(
            {
                "line": line,
                "custom_id": custom_id if isinstance(custom_id, str) else None,
                "code": code,
                "message": message[:MESSAGE_MAX],
                "param": param,
            }
        )


def too_many_inputs(count: int) -> dict[str, Any] | None:
    """The batch's error when its embedding requests hold more inputs than one batch may."""
    if count <= MAX_EMBEDDING_INPUTS:
        return None
    message = (
        f"the batch's requests hold {count:,} embedding inputs; a /v1/embeddings batch takes "
        f"at most {MAX_EMBEDDING_INPUTS:,} in all: split the file into several batches"
    )
    return {"line": None, "custom_id": None, "code": "too_many_inputs", "message": message, "param": None}  # fmt: skip


def parse_lines(
    lines: Iterable[tuple[int, bytes]],
    endpoint: str,
    check: Callable[[RequestIn], None] = lambda _: None,
) -> Parsed:
    """Each ``(line number, line)`` as a request of ``endpoint`` (one of :data:`READERS`), or
    as an error naming the line and field (:func:`read_lines`, all kept)."""
    parsed = Parsed()
    parsed.requests = [request for _, request in read_lines(lines, endpoint, check, parsed.fail)]
    return parsed


def read_lines(
    lines: Iterable[tuple[int, bytes]],
    endpoint: str,
    check: Callable[[RequestIn], None] = lambda _: None,
    fail: Callable[[int, Any, str, str, str | None], None] = lambda *_: None,
) -> Iterator[tuple[int, RequestIn]]:
    """``(line number, request)`` of each good line, one at a time (a 200 MB file is never
    held); each bad line goes to ``fail(line, custom_id, code, message, param)``.

    ``check`` raises :class:`InvalidRequest` for a request the broker would refuse (an
    unknown model, ``max_tokens`` over the model's limit): that line fails, not the batch.
    """
    seen = set()
    for number, raw in lines:
        try:
            item = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            fail(number, None, "invalid_json_line", f"line {number}: not valid JSON", None)
            continue
        if not isinstance(item, dict):
            fail(number, None, "invalid_request", f"line {number}: not a JSON object", None)
            continue
        custom_id = item.get("custom_id")
        try:
            if not isinstance(custom_id, str) or not custom_id:
                raise InvalidRequest("custom_id: a non-empty string is required", field="custom_id")
            if custom_id in seen:
                raise InvalidRequest(
                    f"custom_id: {custom_id!r} is used by an earlier line; custom_id must be "
                    "unique within the batch",
                    field="custom_id",
                )
            seen.add(custom_id)
            if item.get("method", "POST") != "POST":
                raise InvalidRequest("method: must be POST", field="method")
            if item.get("url") != endpoint:
                raise InvalidRequest(
                    f"url: {item.get('url')!r} is not the batch's endpoint {endpoint!r}",
                    field="url",
                )
            request = READERS[endpoint](item.get("body"), custom_id, where="body.")
            check(request)
        except InvalidRequest as exc:
            code = "duplicate_custom_id" if "unique within" in exc.message else "invalid_request"
            fail(number, custom_id, code, f"line {number}: {exc.message}", exc.field)
            continue
        yield number, request


def unix(at: datetime | None) -> int | None:
    return int(at.timestamp()) if at is not None else None


def status_of(job: Job) -> str:
    meta = job.surface_meta or {}
    if meta.get("failed"):
        return "failed"
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        return "in_progress"
    if job.status == JobStatus.COMPLETED:
        return "expired" if job.n_total and job.n_expired == job.n_total else "completed"
    return str(job.status)  # cancelling, cancelled


def ended(job: Job) -> bool:
    return status_of(job) in ("completed", "expired", "cancelled", "failed")


def batch_object(job: Job, cached_tokens: int = 0) -> dict[str, Any]:
    """A job made through the Batches API as the SDK's ``Batch``."""
    meta = job.surface_meta or {}
    status = status_of(job)
    bad = sum(e["line"] is not None for e in meta.get("errors") or [])
    created = meta.get("created") or unix(job.created_at)
    finished = unix(job.finished_at)
    failures = job.n_failed + job.n_expired + job.n_cancelled + bad
    done = ended(job)
    return {
        "id": batch_id(job.id),
        "object": "batch",
        "endpoint": meta.get("endpoint", ENDPOINT),
        "model": meta.get("model"),
        "errors": _errors(meta) if status == "failed" else None,
        "input_file_id": meta.get("input_file_id", ""),
        "completion_window": meta.get("completion_window", WINDOW),
        "status": status,
        "output_file_id": output_file_id(job.id, "output") if done and job.n_succeeded else None,
        "error_file_id": output_file_id(job.id, "errors") if done and failures else None,
        "created_at": created,
        "in_progress_at": None if status == "failed" else created,
        "expires_at": created + WINDOW_S,
        "finalizing_at": None,
        "completed_at": finished if status == "completed" else None,
        "failed_at": created if status == "failed" else None,
        "expired_at": finished if status == "expired" else None,
        "cancelling_at": unix(job.cancel_requested_at),
        "cancelled_at": finished if status == "cancelled" else None,
        "request_counts": {
            "total": job.n_total + bad,
            "completed": job.n_succeeded,
            "failed": failures,
        },
        "usage": {
            "input_tokens": job.input_tokens,
            "input_tokens_details": {"cached_tokens": cached_tokens},
            "output_tokens": job.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": job.input_tokens + job.output_tokens,
        },
        "metadata": meta.get("metadata"),
    }


def _errors(meta: dict[str, Any]) -> dict[str, Any]:
    data = [
        {"code": e["code"], "message": e["message"], "param": e.get("param"), "line": e["line"]}
        for e in (meta.get("errors") or [])
    ]
    if not data:
        empty = "the input file has no requests"
        data = [{"code": "empty_file", "message": empty, "param": None, "line": None}]
    return {"object": "list", "data": data}


# -- output and error files -------------------------------------------------------------------

STATUS_OF_CODE = {
    "context_window_exceeded": 400,
    "provider_rejected": 400,
    "invalid_request": 400,
    "rate_limited": 429,
    "budget_exceeded": 429,
}


def _line_id(request_id: str) -> str:
    return "batch_req_" + request_id.removeprefix("req_")


def _error_body(status: int, message: str, code: str | None, param: str | None) -> dict:
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 429:
        kind = "insufficient_quota" if code == "budget_exceeded" else "rate_limit_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def output_line(row: Request) -> dict[str, Any] | None:
    """The output-file line of a succeeded request; None for any other."""
    if row.status != RequestStatus.SUCCEEDED:
        return None
    body = embeddings_response(row) if is_embedding(row) else chat_completion(row)
    return {
        "id": _line_id(row.id),
        "custom_id": row.custom_id,
        "response": {"status_code": 200, "request_id": row.id, "body": body},
        "error": None,
    }


def error_line(row: Request) -> dict[str, Any] | None:
    """The error-file line of a request that failed, expired or was cancelled; None otherwise."""
    base = {"id": _line_id(row.id), "custom_id": row.custom_id}
    if row.status == RequestStatus.FAILED:
        status = STATUS_OF_CODE.get(row.error_code or "", 500)
        message = row.error or row.error_code or "the request failed"
        body = _error_body(status, message, row.error_code, None)
        response = {"status_code": status, "request_id": row.id, "body": body}
        return {**base, "response": response, "error": None}
    if row.status == RequestStatus.EXPIRED:
        error = {
            "code": "batch_expired",
            "message": "This request could not be executed before the completion window expired.",
        }
        return {**base, "response": None, "error": error}
    if row.status == RequestStatus.CANCELLED:
        error = {"code": "batch_cancelled", "message": "The batch was cancelled before this ran."}
        return {**base, "response": None, "error": error}
    return None


def bad_input_lines(job: Job) -> Iterator[dict[str, Any]]:
    """The error-file lines of the input lines that never became requests (400s)."""
    hexpart = job.id.removeprefix("job_")
    for e in (job.surface_meta or {}).get("errors") or []:
        if e["line"] is None:  # the batch's own error (its errors field), not a line's
            continue
        body = _error_body(400, e["message"], e["code"], e.get("param"))
        yield {
            "id": f"batch_req_{hexpart}_line{e['line']}",
            "custom_id": e.get("custom_id"),
            "response": {"status_code": 400, "request_id": None, "body": body},
            "error": None,
        }


def render_file(job: Job, kind: str, rows: Iterable[Request]) -> Iterator[bytes]:
    """The JSONL of the output (``kind="output"``) or error file, a line at a time."""
    if kind == "errors":
        for line in bad_input_lines(job):
            yield _dump(line)
    pick = output_line if kind == "output" else error_line
    for row in rows:
        line = pick(row)
        if line is not None:
            yield _dump(line)


def _dump(line: dict[str, Any]) -> bytes:
    return (json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
