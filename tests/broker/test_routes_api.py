"""Routes (virtual models) through the API: the tier is chosen at submission, runs as that
model, and the decision is stored and returned with the result."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import delete, select, update

from broker.api import create_app
from broker.api.charts import daily_spend_png
from broker.config.settings import Settings
from broker.store import Job, Request
from broker.store.reports import daily_cost_avoided, daily_spend_by_team
from broker.store.route_stats import RoutedDay, daily_route_costs

PRODUCT = {"Authorization": "Bearer ib-dev-product"}
ADMIN = {"Authorization": "Bearer ib-dev-admin"}


@pytest.fixture
def api(settings: Settings, redis_client) -> TestClient:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def jobs(db) -> Iterator[list[str]]:
    """Job ids to delete after the test: routed requests that succeeded would otherwise be in
    every later routes report, chart and scrape of the session's shared database."""
    created: list[str] = []
    yield created
    db.write(lambda s: s.execute(delete(Job).where(Job.id.in_(created))))


def answered(db, job_id: str, finished_at: dict[str, datetime] | None = None) -> None:
    """As if the workers had answered every request of the job: 10 tokens in, 20 out, 100
    micro-dollars charged; ``r0`` escalated to the flagship first (and paid 50 more for it)."""
    with db.session() as s:
        rows = s.scalars(select(Request).where(Request.job_id == job_id)).all()
        for row in rows:
            decision = dict(row.route_decision)
            escalated = row.custom_id == "r0"
            if escalated:
                decision.update(tier=1, model="gpt-4o", escalated=True)
            when = (finished_at or {}).get(row.custom_id, datetime.now(UTC))
            s.execute(
                update(Request)
                .where(Request.id == row.id)
                .values(status="succeeded", input_tokens=10, cached_input_tokens=0,
                        output_tokens=20, cost_micros=150 if escalated else 100,
                        route_decision=decision, finished_at=when)
            )  # fmt: skip
        s.commit()


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


def test_the_routes_report_shows_tier_mix_escalations_and_the_flagship_counterfactual(
    api, db, jobs
):
    batch = {
        "feature": "chatbot",
        "requests": [ask(f"r{i}", f"hi {i}", metadata={"tier": i % 2}) for i in range(4)],
    }
    job = api.post("/v1/jobs", json=batch, headers=PRODUCT).json()
    jobs.append(job["id"])
    answered(db, job["id"])
    report = api.get("/v1/reports/routes", headers=PRODUCT).json()["routes"]
    (mine,) = [r for r in report if r["feature"] == "chatbot"]
    assert (mine["route"], mine["requests"], mine["by_tier"]) == ("auto", 4, {"0": 1, "1": 3})
    assert list(mine["by_model"].items()) == [("gpt-4o-mini", 1), ("gpt-4o", 3)], "cheapest first"
    assert mine["escalated"] == 1 and mine["escalation_rate"] == 0.25
    # gpt-4o: $2.50 in, $10 out per million: 10 × 2.5 + 20 × 10 = 225 micro-dollars each
    assert mine["flagship_cost_micros"] == 4 * 225 and mine["cost_micros"] == 450
    assert mine["saved_vs_flagship"] == round(1 - 450 / 900, 4)


def routed_on(today: date, days_ago: int) -> datetime:
    return datetime.combine(today - timedelta(days=days_ago), time(12), tzinfo=UTC)


def test_routed_cost_per_day_against_all_flagship(api, db, jobs, settings):
    config, today = settings.config, datetime.now(UTC).date()

    def read(team: str) -> dict[date, RoutedDay]:
        with db.session() as s:
            return daily_route_costs(s, config, days=3, team=team, today=today)

    before, content_before = read("product"), read("content")
    batch = {"feature": "routed-days", "requests": [ask(f"r{i}", f"hi {i}") for i in range(4)]}
    job = api.post("/v1/jobs", json=batch, headers=PRODUCT).json()
    jobs.append(job["id"])
    answered(db, job["id"], {
        "r0": routed_on(today, 0), "r1": routed_on(today, 0), "r2": routed_on(today, 2),
        "r3": routed_on(today, 3),  # a day before the window
    })  # fmt: skip
    after = read("product")
    assert list(after) == [today - timedelta(days=n) for n in (2, 1, 0)], "every day, oldest first"

    def grew(day: date) -> tuple[int, int, int]:
        a, b = after[day], before[day]
        return (a.requests - b.requests, a.cost_micros - b.cost_micros,
                a.flagship_cost_micros - b.flagship_cost_micros)  # fmt: skip

    assert grew(today) == (2, 150 + 100, 2 * 225)
    assert grew(today - timedelta(days=1)) == (0, 0, 0)
    assert grew(today - timedelta(days=2)) == (1, 100, 225)
    assert read("content") == content_before, "another team's chart leaves them out"


def test_the_daily_chart_draws_routed_requests_against_all_flagship(api, db, jobs, settings):
    batch = {"feature": "routed-chart", "requests": [ask(f"r{i}", f"hi {i}") for i in range(2)]}
    job = api.post("/v1/jobs", json=batch, headers=PRODUCT).json()
    jobs.append(job["id"])
    answered(db, job["id"])
    resp = api.get("/v1/reports/daily.png", params={"days": 7}, headers=PRODUCT)
    assert resp.status_code == 200 and resp.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(resp.content))
    assert (picture.format, picture.size) == ("PNG", (1200, 600))
    with db.session() as s:
        spend = daily_spend_by_team(s, days=7, team="product")
        avoided = daily_cost_avoided(s, days=7, team="product")
        routed = daily_route_costs(s, settings.config, days=7, team="product")
    assert routed[datetime.now(UTC).date()].requests >= 2
    assert resp.content == daily_spend_png(spend, avoided=avoided, routed=routed)
    assert resp.content != daily_spend_png(spend, avoided=avoided), "with the routing panel"
    admin = api.get("/v1/reports/daily.png", params={"days": 7, "team": "product"}, headers=ADMIN)
    assert admin.content == resp.content


def series(text: str, name: str, **labels: str) -> float:
    """The value of one sample of ``name`` whose labels include ``labels`` (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_show_routed_requests_escalations_and_the_flagship_counterfactual(api, db, jobs):
    batch = {
        "feature": "routed-metrics",
        "requests": [ask(f"r{i}", f"hi {i}", metadata={"tier": 0}) for i in range(3)],
    }
    job = api.post("/v1/jobs", json=batch, headers=PRODUCT).json()
    jobs.append(job["id"])
    answered(db, job["id"])  # r0 escalated to gpt-4o, r1 and r2 answered on gpt-4o-mini
    text = api.get("/metrics", headers={"Authorization": "Bearer ib-dev-metrics"}).text
    mine = {"route": "auto", "team": "product", "feature": "routed-metrics"}
    requests = "inference_broker_routed_requests_total"
    assert series(text, requests, model="gpt-4o-mini", **mine) == 2
    assert series(text, requests, model="gpt-4o", **mine) == 1
    assert series(text, "inference_broker_routed_escalations_total", **mine) == 1
    assert series(text, "inference_broker_routed_cost_usd_total", **mine) == pytest.approx(350e-6)
    flagship = series(text, "inference_broker_routed_flagship_cost_usd_total", **mine)
    assert flagship == pytest.approx(3 * 225e-6)
    team_view = api.get("/metrics", headers=PRODUCT).text
    assert "inference_broker_routed" not in team_view, "a team reads its own in /v1/reports"
