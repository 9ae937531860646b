"""Handing an attempt back to the queue, and the provider calls an attempt records, on SQLite and
PostgreSQL; the calls as the results API shows them."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.api import create_app
from broker.config.settings import Settings
from broker.states import JobStatus, RequestStatus
from broker.store import Database, Job, Request, transitions
from broker.store.models import ProviderCall
from broker.store.transitions import Call, Claimed, HandBack, Outcome

PRODUCT = {"Authorization": "Bearer ib-dev-product"}
HI = {"role": "user", "content": "hi"}

RETRY = Call("gpt-4o-mini", "sim-openai", "provider_retryable", 30, "sim-openai: HTTP 503")
RETRY_AGAIN = Call("gpt-4o-mini", "sim-openai", "provider_retryable", 31, "sim-openai: HTTP 503")
HAIKU_OK = Call("claude-haiku-4-5", "sim-anthropic", "succeeded", 12, cost_micros=42)
HAIKU_SUCCEEDED = Outcome(
    model="claude-haiku-4-5",
    provider="sim-anthropic",
    latency_ms=12,
    output="hi",
    finish_reason="stop",
    input_tokens=10,
    output_tokens=5,
    cost_micros=42,
    calls=(HAIKU_OK,),
)


def run(db: Database, ids: list[str]) -> list[Claimed]:
    """Dispatch and claim these requests under their next attempt."""
    dispatched = db.write(lambda s: transitions.mark_dispatched(s, ids))
    keys = [(d.request_id, d.attempt) for d in dispatched]
    claimed = db.write(lambda s: transitions.claim_many(s, keys))
    return [claimed[key] for key in keys]


def hand_back(db: Database, *handed: tuple[Claimed, HandBack]) -> list[bool]:
    return db.write(lambda s: transitions.hand_back_many(s, list(handed)))


def finish(db: Database, *finished: tuple[Claimed, Outcome]) -> list[bool]:
    return db.write(lambda s: transitions.finish_many(s, list(finished)))


def row(db: Database, request_id: str) -> Request:
    with db.session() as s:
        return s.get(Request, request_id)


def job(db: Database, job_id: str) -> Job:
    with db.session() as s:
        return s.get(Job, job_id)


def calls(db: Database, request_id: str) -> list[tuple]:
    with db.session() as s:
        rows = s.scalars(
            select(ProviderCall)
            .where(ProviderCall.request_id == request_id)
            .order_by(ProviderCall.attempt, ProviderCall.try_)
        )
        return [
            (
                c.attempt,
                c.try_,
                c.model,
                c.provider,
                c.outcome,
                c.error,
                c.latency_ms,
                c.cost_micros,
            )
            for c in rows
        ]


def test_a_hand_back_queues_the_request_again_with_its_chain_position_and_failures(db, submit):
    job_id, (a, b) = submit(2)
    ca, cb = run(db, [a, b])
    assert hand_back(
        db,
        (ca, HandBack(1, failed=True, calls=(RETRY, RETRY_AGAIN))),
        (cb, HandBack(0, failed=False, calls=())),
    ) == [True, True]
    ra, rb = row(db, a), row(db, b)
    assert (ra.status, ra.chain_index, ra.failures, ra.attempts) == (RequestStatus.QUEUED, 1, 1, 1)
    assert (rb.status, rb.chain_index, rb.failures, rb.attempts) == (RequestStatus.QUEUED, 0, 0, 1)
    assert ra.error_code is None and ra.finished_at is None
    assert calls(db, a) == [
        (1, 1, "gpt-4o-mini", "sim-openai", "provider_retryable", "sim-openai: HTTP 503", 30, 0),
        (1, 2, "gpt-4o-mini", "sim-openai", "provider_retryable", "sim-openai: HTTP 503", 31, 0),
    ]
    assert calls(db, b) == []
    j = job(db, job_id)
    assert (j.status, j.n_succeeded, j.n_failed) == (JobStatus.RUNNING, 0, 0), "nothing ended"


def test_failures_and_chain_position_accumulate_over_dispatches(db, submit):
    _, (a,) = submit(1)
    (first,) = run(db, [a])
    hand_back(db, (first, HandBack(1, failed=True, calls=(RETRY,))))
    (second,) = run(db, [a])
    assert second.attempt == 2 and second.failures == 1, "the claim carries the failures so far"
    hand_back(db, (second, HandBack(2, failed=True, calls=(RETRY,))))
    (third,) = run(db, [a])
    assert third.failures == 2
    hand_back(db, (third, HandBack(2, failed=False, calls=())))  # a 429: not counted
    r = row(db, a)
    assert (r.attempts, r.chain_index, r.failures) == (3, 2, 2)
    assert [(c[0], c[1]) for c in calls(db, a)] == [(1, 1), (2, 1)]


def test_a_stale_attempt_hands_back_nothing(db, submit):
    _, (a,) = submit(1)
    (first,) = run(db, [a])
    assert hand_back(db, (first, HandBack(1, failed=True, calls=(RETRY,)))) == [True]
    assert hand_back(db, (first, HandBack(2, failed=True, calls=(RETRY_AGAIN,)))) == [False], (
        "already queued"
    )
    (second,) = run(db, [a])
    assert hand_back(db, (first, HandBack(2, failed=True, calls=(RETRY_AGAIN,)))) == [False], (
        "not the current attempt"
    )
    r = row(db, a)
    assert (r.status, r.attempts, r.chain_index, r.failures) == (RequestStatus.RUNNING, 2, 1, 1)
    assert [(c[0], c[1], c[6]) for c in calls(db, a)] == [(1, 1, 30)], "no calls of a stale attempt"
    assert second.attempt == 2


def test_the_current_attempt_records_its_calls_beside_a_stale_one_in_the_same_batch(db, submit):
    _, (a, b) = submit(2)
    (stale,) = run(db, [a])
    hand_back(db, (stale, HandBack(1, failed=True)))
    (current,) = run(db, [a])
    (other,) = run(db, [b])
    assert hand_back(
        db,
        (stale, HandBack(1, failed=True, calls=(RETRY,))),
        (current, HandBack(2, failed=True, calls=(RETRY_AGAIN,))),
        (other, HandBack(1, failed=True, calls=(RETRY,))),
    ) == [False, True, True]
    assert [(c[0], c[1], c[6]) for c in calls(db, a)] == [(2, 1, 31)]
    assert [(c[0], c[1]) for c in calls(db, b)] == [(1, 1)]


def test_a_hand_back_while_the_job_is_cancelled_ends_the_request_cancelled(db, submit):
    job_id, (a, _b) = submit(2)
    (ca,) = run(db, [a])
    assert db.write(lambda s: transitions.cancel_job(s, job_id)) == 1, "b was still queued"
    assert job(db, job_id).status == JobStatus.CANCELLING, "a is still running"
    assert hand_back(db, (ca, HandBack(1, failed=True, calls=(RETRY,)))) == [False], (
        "not to be pushed back"
    )
    r = row(db, a)
    assert r.status == RequestStatus.CANCELLED and r.finished_at is not None
    j = job(db, job_id)
    assert (j.status, j.n_cancelled, j.n_failed) == (JobStatus.CANCELLED, 2, 0)
    assert j.finished_at is not None


def test_a_hand_back_that_ends_cancelled_keeps_the_calls_it_made(db, submit):
    """The calls were made (and shown as "every provider call made for it") even though the
    request ended cancelled rather than queued."""
    job_id, (a, _) = submit(2)
    (ca,) = run(db, [a])
    db.write(lambda s: transitions.cancel_job(s, job_id))
    hand_back(db, (ca, HandBack(1, failed=True, calls=(RETRY, RETRY_AGAIN))))
    assert row(db, a).status == RequestStatus.CANCELLED
    assert [(c[0], c[1]) for c in calls(db, a)] == [(1, 1), (1, 2)]


def test_requeue_of_a_dispatched_request_needs_from_states(db, submit):
    _, (a,) = submit(1)
    db.write(lambda s: transitions.mark_dispatched(s, [a]))
    assert not db.write(lambda s: transitions.requeue(s, a, 1)), "only running, by default"
    assert db.write(lambda s: transitions.requeue(s, a, 1, from_states=(RequestStatus.DISPATCHED,)))
    r = row(db, a)
    assert (r.status, r.attempts, r.chain_index, r.failures) == (RequestStatus.QUEUED, 1, 0, 0)


def test_finish_records_the_attempts_calls_once(db, submit):
    job_id, (a,) = submit(1)
    (first,) = run(db, [a])
    hand_back(db, (first, HandBack(1, failed=True, calls=(RETRY, RETRY_AGAIN))))
    (second,) = run(db, [a])
    outcome = HAIKU_SUCCEEDED
    assert finish(db, (second, outcome)) == [True]
    assert finish(db, (second, outcome)) == [False], "a redelivered task records nothing"
    assert calls(db, a) == [
        (1, 1, "gpt-4o-mini", "sim-openai", "provider_retryable", "sim-openai: HTTP 503", 30, 0),
        (1, 2, "gpt-4o-mini", "sim-openai", "provider_retryable", "sim-openai: HTTP 503", 31, 0),
        (2, 1, "claude-haiku-4-5", "sim-anthropic", "succeeded", None, 12, 42),
    ]
    r = row(db, a)
    assert (r.status, r.model_used, r.attempts, r.failures) == (
        RequestStatus.SUCCEEDED,
        "claude-haiku-4-5",
        2,
        1,
    )
    assert job(db, job_id).status == JobStatus.COMPLETED


def test_a_failed_finish_records_its_calls_too(db, submit):
    _, (a,) = submit(1)
    (claimed,) = run(db, [a])
    outcome = Outcome(
        model="gpt-4o-mini",
        provider="sim-openai",
        latency_ms=3,
        error_code="provider_rejected",
        error="sim-openai: bad request",
        calls=(Call("gpt-4o-mini", "sim-openai", "provider_rejected", 3, "sim-openai: bad"),),
    )
    assert finish(db, (claimed, outcome)) == [True]
    assert [c[4] for c in calls(db, a)] == ["provider_rejected"]


# --- the results API ----------------------------------------------------------------------------


@pytest.fixture
def api(settings: Settings, redis_client) -> TestClient:
    with TestClient(create_app(settings)) as client:
        yield client


def test_results_show_every_call_in_order(api, db):
    body = {
        "feature": "search",
        "requests": [
            {"custom_id": f"r{i}", "model": "gpt-4o-mini", "messages": [HI]} for i in range(2)
        ],
    }
    created = api.post("/v1/jobs", json=body, headers=PRODUCT)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    with db.session() as s:
        a, _b = s.scalars(select(Request.id).where(Request.job_id == job_id).order_by(Request.seq))
    (first,) = run(db, [a])
    hand_back(db, (first, HandBack(1, failed=True, calls=(RETRY, RETRY_AGAIN))))
    (second,) = run(db, [a])
    outcome = HAIKU_SUCCEEDED
    finish(db, (second, outcome))

    page = api.get(f"/v1/jobs/{job_id}/results", headers=PRODUCT).json()
    results = {r["custom_id"]: r for r in page["data"]}
    assert results["r1"]["calls"] == [], "a request never dispatched made no call"
    done = results["r0"]
    assert (done["status"], done["model_used"], done["provider"], done["attempts"]) == (
        "succeeded",
        "claude-haiku-4-5",
        "sim-anthropic",
        2,
    )
    assert done["calls"] == [
        {
            "attempt": 1,
            "try": 1,
            "model": "gpt-4o-mini",
            "provider": "sim-openai",
            "outcome": "provider_retryable",
            "error": "sim-openai: HTTP 503",
            "latency_ms": 30,
            "cost_micros": 0,
        },
        {
            "attempt": 1,
            "try": 2,
            "model": "gpt-4o-mini",
            "provider": "sim-openai",
            "outcome": "provider_retryable",
            "error": "sim-openai: HTTP 503",
            "latency_ms": 31,
            "cost_micros": 0,
        },
        {
            "attempt": 2,
            "try": 1,
            "model": "claude-haiku-4-5",
            "provider": "sim-anthropic",
            "outcome": "succeeded",
            "error": None,
            "latency_ms": 12,
            "cost_micros": 42,
        },
    ]
    lines = api.get(
        f"/v1/jobs/{job_id}/results", params={"format": "jsonl"}, headers=PRODUCT
    ).text.splitlines()
    streamed = {r["custom_id"]: r for r in map(json.loads, lines)}
    assert streamed["r0"]["calls"] == done["calls"], "JSONL shows the same calls"
