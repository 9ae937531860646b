"""The webhook outbox: delivery rows written in the transaction that ends a job or a request.

:mod:`broker.store.transitions` calls these from ``_count``, so an event is recorded if and only
if the state change it reports commits; the webhooks worker sends it later, however many times
it takes (:mod:`broker.store.deliveries`). What a row holds is the event's ``data``; the sender
adds the envelope (delivery id, type, created_at) and ``results_url``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from broker.ids import new_delivery_id
from broker.money import format_usd
from broker.store.models import Request, WebhookDelivery, utcnow

JOB_FINISHED = "job.finished"
REQUEST_FINISHED = "request.finished"
EVENT_TYPES = (JOB_FINISHED, REQUEST_FINISHED)
DEFAULT_EVENTS = (JOB_FINISHED,)

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"

_D, _R = WebhookDelivery.__table__, Request.__table__


@dataclass(frozen=True, slots=True)
class RequestEnd:
    """A request that reached a terminal state, as its ``request.finished`` event reports it."""

    request_id: str
    status: str
    cost_micros: int = 0
    error_code: str | None = None


def wants(events: Sequence[str] | None, kind: str) -> bool:
    return kind in (events if events is not None else DEFAULT_EVENTS)


def _row(job_id: str, team_id: str, kind: str, url: str, data: dict[str, Any]) -> dict:
    now = utcnow()
    return {
        "id": new_delivery_id(),
        "job_id": job_id,
        "team_id": team_id,
        "event_type": kind,
        "url": url,
        "payload": data,
        "status": PENDING,
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


def job_finished(session: Session, job: Row) -> None:
    """Record ``job.finished`` for a job that just ended (a row of the jobs table, as the
    ending UPDATE returned it), if it has a webhook that wants it."""
    if not job.webhook_url or not wants(job.webhook_events, JOB_FINISHED):
        return
    done = job.n_succeeded + job.n_failed + job.n_cancelled + job.n_expired
    data = {
        "job_id": job.id,
        "status": job.status,
        "counts": {
            "total": job.n_total,
            "pending": job.n_total - done,
            "succeeded": job.n_succeeded,
            "failed": job.n_failed,
            "cancelled": job.n_cancelled,
            "expired": job.n_expired,
        },
        "cost_micros": job.cost_micros,
        "cost_usd": format_usd(job.cost_micros, places=6),
    }
    session.execute(insert(_D), [_row(job.id, job.team_id, JOB_FINISHED, job.webhook_url, data)])


def requests_finished(session: Session, job: Row, ended: Sequence[RequestEnd]) -> None:
    """Record ``request.finished`` for each of ``ended`` if the job's webhook asked for it."""
    if not ended or not job.webhook_url or not wants(job.webhook_events, REQUEST_FINISHED):
        return
    ids = [end.request_id for end in ended]
    custom = dict(session.execute(select(_R.c.id, _R.c.custom_id).where(_R.c.id.in_(ids))).all())
    rows = [
        _row(
            job.id,
            job.team_id,
            REQUEST_FINISHED,
            job.webhook_url,
            {
                "job_id": job.id,
                "request_id": end.request_id,
                "custom_id": custom.get(end.request_id),
                "status": end.status,
                "cost_micros": end.cost_micros,
                "cost_usd": format_usd(end.cost_micros, places=6),
                "error_code": end.error_code,
            },
        )
        for end in ended
    ]
    session.execute(insert(_D), rows)
