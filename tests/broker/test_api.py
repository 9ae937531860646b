"""The HTTP API in-process (FastAPI TestClient) on a real Redis and a real database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from broker import redis_keys
from broker.api import create_app
from broker.config.settings import Settings
from broker.store import Job, Request

PRODUCT = {"Authorization": "Bearer ib-dev-product"}
CONTENT = {"Authorization": "Bearer ib-dev-content"}


def req(i: int, **over) -> dict:
    body = {
        "custom_id": f"r{i}",
        "model": "gpt-4o-mini",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": f"hello {i}"}],
    }
    body.update(over)
    return body


@pytest.fixture
def api(settings: Settings, redis_client) -> TestClient:
    settings = settings.model_copy(update={"max_batch_size": 100})
    with TestClient(create_app(settings)) as client:
        yield client


def counts(db) -> tuple[int, int]:
    with db.session() as s:
        return s.scalar(select(func.count()).select_from(Job)), s.scalar(
            select(func.count()).select_from(Request)
        )


def queued_entries(redis_client) -> int:
    return sum(
        redis_client.llen(k) for k in redis_client.keys(redis_keys.team_queue_prefix() + "*")
    )


def test_submit_writes_rows_and_queue_entries(api, db, redis_client):
    before = counts(db)
    body = {
        "feature": "chatbot",
        "requests": [req(i) for i in range(5)] + [req(9, priority="high")],
    }
    resp = api.post("/v1/jobs", json=body, headers=PRODUCT)
    assert resp.status_code == 201, resp.text
    job = resp.json()
    assert job["status"] == "queued" and job["counts"]["total"] == 6 and job["team"] == "product"
    window = datetime.fromisoformat(job["expires_at"]) - datetime.fromisoformat(job["created_at"])
    assert window == timedelta(hours=24), "the default completion window"
    assert counts(db) == (before[0] + 1, before[1] + 6)
    assert redis_client.llen(redis_keys.team_queue("product", "medium")) == 5
    assert redis_client.llen(redis_keys.team_queue("product", "high")) == 1
    assert b"product" in redis_client.smembers(redis_keys.backlogged_teams())

    got = api.get(f"/v1/jobs/{job['id']}", headers=PRODUCT).json()
    assert got["id"] == job["id"] and got["counts"]["pending"] == 6
    listed = api.get("/v1/jobs", headers=PRODUCT).json()
    assert job["id"] in [j["id"] for j in listed["data"]]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({}, 401), ({"Authorization": "Bearer nope"}, 401), ({"Authorization": "Basic x"}, 401)],
)
def test_missing_or_wrong_key_is_401(api, headers, expected):
    resp = api.post("/v1/jobs", json={"feature": "chatbot", "requests": [req(1)]}, headers=headers)
    assert resp.status_code == expected
    assert resp.json()["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"feature": "chatbot", "requests": []}, 400, "requests", "empty"),
        ({"feature": "chatbot", "requests": [req(i) for i in range(101)]}, 413, "requests", "101"),
        (
            {"feature": "chatbot", "requests": [req(1, model="gpt-9")]},
            400,
            "requests[0].model",
            "known models: claude-haiku-4-5",
        ),
        (
            {"feature": "chatbot", "requests": [req(1), req(2), req(1)]},
            400,
            "requests[2].custom_id",
            "'r1'",
        ),
        (
            {"feature": "chatbot", "requests": [req(1, max_tokens=10**6)]},
            400,
            "requests[0].max_tokens",
            "limit",
        ),
        (
            {"feature": "chatbot", "requests": [req(1, temperature=5)]},
            422,
            "requests[0].temperature",
            "less than or equal",
        ),
        (
            {"feature": "chatbot", "requests": [req(1, stop=["a", "b", "c", "d", "e"])]},
            422,
            "requests[0].stop",
            "at most 4 items",
        ),
        (
            {"feature": "chatbot", "requests": [req(1, response_format={"type": "json_schema"})]},
            422,
            "requests[0].response_format",
            "type json_schema needs json_schema",
        ),
        (
            {"feature": "chatbot", "requests": [req(1, top_k=5)]},
            400,
            "requests[0].top_k",
            "cannot go to model 'gpt-4o-mini'",
        ),
        (
            {"feature": "chatbot", "requests": [{"custom_id": "x", "model": "gpt-4o-mini"}]},
            422,
            "requests[0].messages",
            "required",
        ),
        ({"requests": [req(1)]}, 422, "feature", "required"),
        (
            {"feature": "chatbot", "completion_window": "24x", "requests": [req(1)]},
            422,
            "completion_window",
            "should match pattern",
        ),
        # PostgreSQL cannot store a NUL character: these were 503s, "the store is unavailable"
        (
            {"feature": "chatbot", "requests": [req(1, custom_id="r\x00")]},
            422,
            "requests[0].custom_id",
            "NUL",
        ),
        (
            {"feature": "chatbot", "webhook_url": "https://a.example/\x00", "requests": [req(1)]},
            422,
            "webhook_url",
            "NUL",
        ),
        # urlsplit raised ValueError on these: 500
        (
            {"feature": "chatbot", "webhook_url": "https://[::1", "requests": [req(1)]},
            400,
            "webhook_url",
            "not a valid URL",
        ),
        (
            {"feature": "chatbot", "webhook_url": "https://a.example:99999/", "requests": [req(1)]},
            400,
            "webhook_url",
            "not a valid URL",
        ),
    ],
)
def test_bad_submissions_are_refused_and_leave_nothing(
    api, db, redis_client, body, status, field, words
):
    before, queued = counts(db), queued_entries(redis_client)
    resp = api.post("/v1/jobs", json=body, headers=PRODUCT)
    assert resp.status_code == status, resp.text
    error = resp.json()["error"]
    assert error["field"] == field
    assert words in error["message"]
    assert counts(db) == before
    assert queued_entries(redis_client) == queued


def test_another_teams_job_is_404(api):
    job = api.post(
        "/v1/jobs", json={"feature": "chatbot", "requests": [req(1)]}, headers=PRODUCT
    ).json()
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/results"):
        resp = api.get(path, headers=CONTENT)
        assert resp.status_code == 404
        assert resp.json()["error"]["type"] == "not_found"
    assert api.post(f"/v1/jobs/{job['id']}/cancel", headers=CONTENT).status_code == 404
    assert job["id"] not in [j["id"] for j in api.get("/v1/jobs", headers=CONTENT).json()["data"]]


def test_results_page_and_jsonl(api):
    job = api.post(
        "/v1/jobs",
        json={"feature": "search", "requests": [req(i) for i in range(7)]},
        headers=PRODUCT,
    ).json()
    seen, after = [], -1
    while True:
        page = api.get(
            f"/v1/jobs/{job['id']}/results", params={"after": after, "limit": 3}, headers=PRODUCT
        ).json()
        seen += [r["custom_id"] for r in page["data"]]
        if not page["has_more"]:
            break
        after = page["next_after"]
    assert seen == [f"r{i}" for i in range(7)]
    resp = api.get(f"/v1/jobs/{job['id']}/results", params={"format": "jsonl"}, headers=PRODUCT)
    assert resp.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in resp.text.splitlines()]
    assert [r["custom_id"] for r in lines] == seen
    assert all(r["status"] == "queued" for r in lines)


def test_cancel_stops_queued_requests_and_ends_the_job(api):
    job = api.post(
        "/v1/jobs",
        json={"feature": "search", "requests": [req(i) for i in range(4)]},
        headers=PRODUCT,
    ).json()
    resp = api.post(f"/v1/jobs/{job['id']}/cancel", headers=PRODUCT)
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "cancelled"
    assert body["counts"]["cancelled"] == 4 and body["counts"]["pending"] == 0


@pytest.mark.parametrize(
    ("method", "path", "params", "field"),
    [
        # past a 32-bit INTEGER (PostgreSQL) and a 64-bit one (SQLite): were 500s
        ("GET", "/v1/jobs/{job}/results", {"after": 2**31}, "after"),
        ("GET", "/v1/jobs/{job}/results", {"after": 2**63}, "after"),
        # a NUL character, which PostgreSQL refuses in a query: were 500s and 503s
        ("GET", "/v1/jobs", {"before": "job_\x00"}, "before"),
        ("GET", "/v1/jobs/job_%00", {}, "job_id"),
        ("GET", "/v1/jobs/job_%00/results", {}, "job_id"),
        ("POST", "/v1/jobs/job_%00/cancel", {}, "job_id"),
        ("GET", "/v1/jobs/job_%00/webhooks", {}, "job_id"),
    ],
)
def test_parameters_the_database_cannot_take_are_422_naming_them(api, method, path, params, field):
    job = api.post(
        "/v1/jobs", json={"feature": "chatbot", "requests": [req(1)]}, headers=PRODUCT
    ).json()
    resp = api.request(method, path.format(job=job["id"]), params=params, headers=PRODUCT)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request" and error["field"] == field


def test_healthz(api):
    assert api.get("/healthz").json()["status"] == "ok"


def test_a_batch_at_the_limit_is_written_in_one_go(settings, db, redis_client):
    """50,000 requests (the default limit) land as rows and queue entries; one more is 413."""
    requests = [req(i) for i in range(50_000)]
    with TestClient(create_app(settings)) as client:
        resp = client.post(
            "/v1/jobs", json={"feature": "classification", "requests": requests}, headers=PRODUCT
        )
        assert resp.status_code == 201, resp.text[:500]
        job_id = resp.json()["id"]
        with db.session() as s:
            rows = s.scalar(
                select(func.count()).select_from(Request).where(Request.job_id == job_id)
            )
        assert rows == 50_000
        assert redis_client.llen(redis_keys.team_queue("product", "medium")) == 50_000

        over = client.post(
            "/v1/jobs",
            json={"feature": "classification", "requests": [*requests, req(50_000)]},
            headers=PRODUCT,
        )
        assert over.status_code == 413
        assert "50000" in over.json()["error"]["message"]
