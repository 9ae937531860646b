"""The webhook outbox on SQLite and PostgreSQL: delivery rows are written in the transaction
that ends the job (or request), never without it; attempts are claimed once; the listing route
shows them; a submission to a private webhook host is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from broker.errors import InvalidRequest
from broker.states import RequestStatus
from broker.store import Job, deliveries, transitions
from broker.store.models import WebhookAttempt, WebhookDelivery
from broker.store.transitions import Outcome
from broker.submission import check_webhook_url

HOOK = "http://127.0.0.1:9/hook"


class Boom(Exception):
    pass


@pytest.fixture
def submit(submit_to, settings):
    """As the shared one, with the tests' loopback receiver allowed as a webhook target."""
    config = settings.config
    allow = config.webhooks.model_copy(update={"allow_private_hosts": ["127.0.0.1"]})
    return submit_to(config.model_copy(update={"webhooks": allow}))


def run(db, request_ids: list[str]) -> list[transitions.Claimed]:
    db.write(lambda s: transitions.mark_dispatched(s, request_ids))
    claimed = db.write(lambda s: transitions.claim_many(s, [(r, 1) for r in request_ids]))
    return [claimed[(r, 1)] for r in request_ids]


def ok(cost: int = 21) -> Outcome:
    return Outcome(
        model="gpt-4o-mini",
        provider="sim-openai",
        latency_ms=5,
        output="hi",
        input_tokens=10,
        output_tokens=5,
        cost_micros=cost,
    )


def rows(db, job_id: str) -> list[WebhookDelivery]:
    with db.session() as s:
        query = select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        return list(s.scalars(query.order_by(WebhookDelivery.created_at)))


def test_the_job_finished_row_is_written_in_the_transaction_that_ends_the_job(db, submit):
    job_id, ids = submit(2, webhook_url=HOOK)
    first, second = run(db, ids)
    db.write(lambda s: transitions.finish_many(s, [(first, ok())]))
    assert rows(db, job_id) == [], "not ended yet: nothing to send"

    def end_then_fail(session):
        transitions.finish_many(session, [(second, ok(cost=9))])
        assert session.scalar(select(Job.status).where(Job.id == job_id)) == "completed"
        assert len(session.scalars(select(WebhookDelivery)).all()) >= 1  # same transaction
        raise Boom

    with pytest.raises(Boom):
        db.write(end_then_fail)
    assert rows(db, job_id) == [], "rolled back with the job's end"

    db.write(lambda s: transitions.finish_many(s, [(second, ok(cost=9))]))
    [row] = rows(db, job_id)
    assert row.event_type == "job.finished" and row.status == "pending" and row.url == HOOK
    assert row.id.startswith("whd_") and row.attempts == 0 and row.team_id == "product"
    assert row.payload == {
        "job_id": job_id,
        "status": "completed",
        "counts": {
            "total": 2,
            "pending": 0,
            "succeeded": 2,
            "failed": 0,
            "cancelled": 0,
            "expired": 0,
        },
        "cost_micros": 30,
        "cost_usd": "$0.000030",
    }


def test_no_webhook_url_no_rows_and_a_cancelled_job_reports_cancelled(db, submit):
    plain, ids = submit(1)
    [claimed] = run(db, ids)
    db.write(lambda s: transitions.finish_many(s, [(claimed, ok())]))
    assert rows(db, plain) == []

    job_id, _ = submit(3, webhook_url=HOOK)
    db.write(lambda s: transitions.cancel_job(s, job_id))
    [row] = rows(db, job_id)
    assert row.payload["status"] == "cancelled" and row.payload["counts"]["cancelled"] == 3


def test_request_events_when_asked_one_per_request_then_the_job(db, submit):
    job_id, ids = submit(2, webhook_url=HOOK, webhook_events=["request.finished", "job.finished"])
    first, second = run(db, ids)
    failed = Outcome(
        model="gpt-4o-mini",
        provider="sim-openai",
        latency_ms=3,
        error_code="provider_rejected",
        error="bad",
    )
    db.write(lambda s: transitions.finish_many(s, [(first, ok()), (second, failed)]))
    found = rows(db, job_id)
    assert sorted(r.event_type for r in found) == [
        "job.finished",
        "request.finished",
        "request.finished",
    ]
    by_custom = {r.payload["custom_id"]: r.payload for r in found if r.event_type != "job.finished"}
    assert by_custom["r0"]["status"] == RequestStatus.SUCCEEDED
    assert by_custom["r0"]["cost_micros"] == 21 and by_custom["r0"]["error_code"] is None
    assert by_custom["r1"]["status"] == "failed"
    assert by_custom["r1"]["error_code"] == "provider_rejected"
    assert by_custom["r1"]["request_id"] == ids[1]


def test_an_attempt_is_claimed_once_and_recorded(db, submit):
    job_id, ids = submit(1, webhook_url=HOOK)
    [claimed] = run(db, ids)
    db.write(lambda s: transitions.finish_many(s, [(claimed, ok())]))
    due = db.write(lambda s: deliveries.take_due(s, lease_s=60))
    assert [d.attempt for d in due if d.delivery_id == rows(db, job_id)[0].id] == [1]
    assert db.write(lambda s: deliveries.take_due(s, lease_s=60)) == [], "leased"
    delivery_id = rows(db, job_id)[0].id
    first = db.write(lambda s: deliveries.claim(s, delivery_id, 1, 60))
    assert first is not None and first.payload["job_id"] == job_id
    assert db.write(lambda s: deliveries.claim(s, delivery_id, 1, 60)) is None, "duplicate"
    status = db.write(
        lambda s: deliveries.record(
            s, first, status_code=500, error="HTTP 500", duration_ms=3, retry_in_s=0.0
        )
    )
    assert status == "pending"
    second = db.write(lambda s: deliveries.claim(s, delivery_id, 2, 60))
    status = db.write(
        lambda s: deliveries.record(
            s, second, status_code=200, error=None, duration_ms=2, retry_in_s=1.0
        )
    )
    assert status == "delivered"
    assert db.write(lambda s: deliveries.claim(s, delivery_id, 3, 60)) is None, "delivered"
    with db.session() as s:
        [(delivery, attempts)] = deliveries.of_job(s, job_id)
        assert delivery.status == "delivered" and delivery.delivered_at is not None
        assert [(a.attempt, a.status_code) for a in attempts] == [(1, 500), (2, 200)]
        assert (
            s.scalar(
                select(WebhookAttempt.error).where(
                    WebhookAttempt.attempt == 1, WebhookAttempt.delivery_id == delivery_id
                )
            )
            == "HTTP 500"
        )


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/x", "http://10.0.0.1/x", "http://169.254.169.254/", "http://[::1]/"]
)
def test_a_private_webhook_host_is_refused_at_submission_naming_the_field(url):
    with pytest.raises(InvalidRequest) as err:
        check_webhook_url(url, [])
    assert err.value.field == "webhook_url" and "webhook_url" in err.value.message
    check_webhook_url("http://127.0.0.1/x", ["127.0.0.1"])  # allowlisted
    check_webhook_url("https://no-such-host.invalid/x", [])  # checked again at delivery
