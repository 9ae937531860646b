"""Routes (virtual models) through the API: the tier is chosen at submission, runs as that
model, and the decision is stored and returned with the result."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.api import create_app
from broker.config.settings import Settings
from broker.store import Request

PRODUCT = {"Authorization": "Bearer ib-dev-product"}


@pytest.fixture
def api(settings: Settings, redis_client) -> TestClient:
    with TestClient(create_app(settings)) as client:
        yield client


def ask(custom_id: str, content: str, **over) -> dict:
    body = {
        "custom_id": custom_id,
        "model": "auto",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": content}],
    }
    body.update(over)
    return body


def test_a_route_chooses_a_tier_and_records_why(api, db):
    batch = {
        "feature": "chatbot",
        "requests": [
            ask("code", "Fix this:\n```python\nprint(1\n```"),
            ask("hint", "hello", metadata={"tier": 0}),
            ask("plain", "What is the capital of France?"),
        ],
    }
    resp = api.post("/v1/jobs", json=batch, headers=PRODUCT)
    assert resp.status_code == 201, resp.text
    with db.session() as s:
        rows = {
            r.custom_id: r
            for r in s.scalars(select(Request).where(Request.job_id == resp.json()["id"]))
        }
    assert rows["code"].model == "gpt-4o" and rows["code"].route == "auto"
    assert rows["code"].route_decision["layer"] == "rule"
    assert (rows["hint"].model, rows["hint"].route_decision["layer"]) == ("gpt-4o-mini", "hint")
    learned = rows["plain"].route_decision
    assert learned["layer"] == "learned" and 0 <= learned["score"] <= 1
    results = api.get(f"/v1/jobs/{resp.json()['id']}/results", headers=PRODUCT).json()["data"]
    assert results[0]["route"]["model"] == "gpt-4o" and results[0]["model"] == "gpt-4o"


def test_a_pinned_feature_stays_on_the_small_tier(api, db):
    batch = {"feature": "classification", "requests": [ask("c", "```code``` but pinned")]}
    resp = api.post("/v1/jobs", json=batch, headers=PRODUCT)
    assert resp.status_code == 201, resp.text
    with db.session() as s:
        row = s.scalars(select(Request).where(Request.job_id == resp.json()["id"])).one()
    assert (row.model, row.route_decision["layer"]) == ("gpt-4o-mini", "pin")


def test_no_model_without_a_default_route_is_400_naming_models_and_routes(api):
    body = {
        "feature": "chatbot",
        "requests": [{"custom_id": "x", "messages": [{"role": "user", "content": "hi"}]}],
    }
    resp = api.post("/v1/jobs", json=body, headers=PRODUCT)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["field"] == "requests[0].model" and "auto" in error["message"]
    unknown = api.post(
        "/v1/jobs",
        json={"feature": "chatbot", "requests": [ask("y", "hi", model="nope")]},
        headers=PRODUCT,
    )
    assert unknown.status_code == 400 and "routes: auto" in unknown.json()["error"]["message"]
