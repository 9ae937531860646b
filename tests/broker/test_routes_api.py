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


def test_the_routes_report_shows_tier_mix_escalations_and_the_flagship_counterfactual(api, db):
    from datetime import UTC, datetime

    from sqlalchemy import update

    batch = {
        "feature": "chatbot",
        "requests": [ask(f"r{i}", f"hi {i}", metadata={"tier": i % 2}) for i in range(4)],
    }
    job = api.post("/v1/jobs", json=batch, headers=PRODUCT).json()
    with db.session() as s:  # as if the workers had answered: 10 in, 20 out; one escalated
        rows = s.scalars(select(Request).where(Request.job_id == job["id"])).all()
        for row in rows:
            decision = dict(row.route_decision)
            if row.custom_id == "r0":
                decision.update(tier=1, model="gpt-4o", escalated=True)
            s.execute(
                update(Request)
                .where(Request.id == row.id)
                .values(status="succeeded", input_tokens=10, cached_input_tokens=0, output_tokens=20,
                        cost_micros=100, route_decision=decision, finished_at=datetime.now(UTC))
            )  # fmt: skip
        s.commit()
    report = api.get("/v1/reports/routes", headers=PRODUCT).json()["routes"]
    (mine,) = [r for r in report if r["feature"] == "chatbot"]
    assert (mine["route"], mine["requests"], mine["by_tier"]) == ("auto", 4, {"0": 1, "1": 3})
    assert mine["escalated"] == 1 and mine["escalation_rate"] == 0.25
    # gpt-4o: $2.50 in, $10 out per million: 10 × 2.5 + 20 × 10 = 225 micro-dollars each
    assert mine["flagship_cost_micros"] == 4 * 225 and mine["cost_micros"] == 400
    assert mine["saved_vs_flagship"] == round(1 - 400 / 900, 4)
