"""Webhook deliveries after the outbox: which are due, claiming an attempt, recording it, and
listing a job's deliveries.

Like request attempts, a delivery attempt is claimed with a conditional UPDATE that names the
attempt number it expects, so a task sent twice (a redelivery, or the outbox sending again after
a worker died) POSTs once, and a delivered or failed delivery is never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from broker.store.models import WebhookAttempt, WebhookDelivery, utcnow
from broker.store.outbox import DELIVERED, FAILED, PENDING

_D, _A = WebhookDelivery.__table__, WebhookAttempt.__table__


@dataclass(frozen=True, slots=True)
class Due:
    delivery_id: str
    attempt: int  # the attempt to make: attempts so far + 1


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    job_id: str
    team_id: str
    event_type: str
    url: str
    payload: dict[str, Any]
    created_at: datetime
    attempt: int


def take_due(session: Session, lease_s: float, limit: int = 200) -> list[Due]:
    """Pending deliveries whose next attempt is due, each leased for ``lease_s`` (its
    ``next_attempt_at`` moved on) so the next pass does not send it again while it is in flight;
    if the worker dies, the lease runs out and it is sent again."""
    now = utcnow()
    rows = session.execute(
        select(_D.c.id, _D.c.attempts)
        .where(_D.c.status == PENDING, _D.c.next_attempt_at <= now)
        .order_by(_D.c.next_attempt_at)
        .limit(limit)
    ).all()
    due = []
    for row in rows:
        leased = session.execute(
            update(_D)
            .where(_D.c.id == row.id, _D.c.status == PENDING, _D.c.next_attempt_at <= now)
            .values(next_attempt_at=now + timedelta(seconds=lease_s))
        ).rowcount
        if leased:
            due.append(Due(row.id, row.attempts + 1))
    return due


def expire_old(session: Session, max_age_s: float) -> int:
    """Pending deliveries older than ``max_age_s`` → failed. Returns how many."""
    cutoff = utcnow() - timedelta(seconds=max_age_s)
    return session.execute(
        update(_D)
        .where(_D.c.status == PENDING, _D.c.created_at < cutoff)
        .values(status=FAILED, next_attempt_at=None, last_error=f"not delivered in {max_age_s:g} s")
    ).rowcount


def claim(session: Session, delivery_id: str, attempt: int, lease_s: float) -> Claimed | None:
    """Start attempt ``attempt`` if the delivery is pending and this is its next attempt; None
    when it is delivered, failed, or that attempt was already started (a duplicate task)."""
    row = session.execute(
        update(_D)
        .where(_D.c.id == delivery_id, _D.c.status == PENDING, _D.c.attempts == attempt - 1)
        .values(attempts=attempt, next_attempt_at=utcnow() + timedelta(seconds=lease_s))
        .returning(
            _D.c.id,
            _D.c.job_id,
            _D.c.team_id,
            _D.c.event_type,
            _D.c.url,
            _D.c.payload,
            _D.c.created_at,
        )
    ).one_or_none()
    if row is None:
        return None
    return Claimed(*row, attempt=attempt)


def record(
    session: Session,
    claimed: Claimed,
    *,
    status_code: int | None,
    error: str | None,
    duration_ms: int,
    retry_in_s: float | None,
) -> str:
    """Store the attempt and move the delivery on: delivered on a 2xx; else pending again in
    ``retry_in_s``, or failed when ``retry_in_s`` is None. Returns the delivery's status."""
    now = utcnow()
    session.execute(
        _A.insert().values(
            delivery_id=claimed.id,
            attempt=claimed.attempt,
            at=now,
            status_code=status_code,
            error=error,
            duration_ms=duration_ms,
        )
    )
    delivered = error is None and status_code is not None and 200 <= status_code < 300
    values: dict[str, Any] = {"last_status_code": status_code, "last_error": error}
    if delivered:
        values |= {"status": DELIVERED, "delivered_at": now, "next_attempt_at": None}
    elif retry_in_s is None:
        values |= {"status": FAILED, "next_attempt_at": None}
    else:
        values |= {"next_attempt_at": now + timedelta(seconds=retry_in_s)}
    status = values.get("status", PENDING)
    session.execute(
        update(_D)
        .where(_D.c.id == claimed.id, _D.c.attempts == claimed.attempt, _D.c.status == PENDING)
        .values(values)
    )
    return status


def of_job(session: Session, job_id: str) -> list[tuple[WebhookDelivery, list[WebhookAttempt]]]:
    """A job's deliveries, oldest first, each with its attempts in order."""
    deliveries = session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.job_id == job_id)
        .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
    ).all()
    attempts: dict[str, list[WebhookAttempt]] = {d.id: [] for d in deliveries}
    if deliveries:
        for attempt in session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(list(attempts)))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.attempt)
        ):
            attempts[attempt.delivery_id].append(attempt)
    return [(d, attempts[d.id]) for d in deliveries]
