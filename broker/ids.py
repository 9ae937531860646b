"""Identifiers: short, prefixed, unguessable for jobs; derived from the job for its requests."""

from __future__ import annotations

import secrets


def new_job_id() -> str:
    return f"job_{secrets.token_hex(12)}"


def request_id(job_id: str, seq: int) -> str:
    return f"req_{job_id.removeprefix('job_')}_{seq}"


def new_delivery_id() -> str:
    """A webhook delivery's id: the same on every attempt, so receivers can deduplicate."""
    return f"whd_{secrets.token_hex(12)}"


def job_of_request(request_id: str) -> str:
    """The job a request id was derived from (:func:`request_id`)."""
    return "job_" + request_id.removeprefix("req_").rsplit("_", 1)[0]
