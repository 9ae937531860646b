"""``/v1/admin`` budgets, pauses and alerts in-process, on a real Redis and a real database."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete, select

from broker import redis_keys
from broker.api import create_app
from broker.config.broker_toml import DEFAULT_CONFIG, BrokerConfig, load_config, parse_config
from broker.config.settings import Settings
from broker.store import BudgetLimit, LedgerEntry, Request, TeamSetting
from schedulers.alerts import Alerts
from schedulers.budgets import BudgetLimits

ADMIN = {"Authorization": "Bearer ib-dev-admin"}
PRODUCT = {"Authorization": "Bearer ib-dev-product"}
BUDGETS = [
    {"team": "product", "limit_usd": "1.00"},
    {"team": "product", "feature": "search", "window": "monthly", "limit_usd": "5"},
]


@pytest.fixture
def config_path(tmp_path: Path, budgets_toml: str) -> Path:
    """The packaged broker.toml with two budgets: product's daily and product/search monthly."""
    path = tmp_path / "broker.toml"
    path.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8") + budgets_toml, encoding="utf-8")
    return path


@pytest.fixture
def config(config_path: Path) -> BrokerConfig:
    loaded = load_config(config_path)
    built = parse_config({**load_config().model_dump(mode="json"), "budgets": BUDGETS})
    assert loaded == built, "the file says what the test means"
    return loaded


@pytest.fixture
def clean_rows(db):
    """Overrides and pauses live in the session's shared database: start and end without."""

    def wipe(session):
        session.execute(delete(TeamSetting))
        session.execute(delete(BudgetLimit))

    db.write(wipe)
    yield
    db.write(wipe)


@pytest.fixture
def api(settings: Settings, config_path: Path, config, redis_client, clean_rows) -> TestClient:
    with TestClient(create_app(settings.model_copy(update={"config_path": config_path}))) as c:
        yield c


def budgets(api: TestClient) -> dict[str, dict]:
    resp = api.get("/v1/admin/budgets", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return {b["id"]: b for b in resp.json()["budgets"]}


def teams(api: TestClient) -> dict[str, dict]:
    resp = api.get("/v1/admin/teams", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return {t["team"]: t for t in resp.json()["teams"]}


def budget_key(config: BrokerConfig, budget_id: str) -> str:
    budget = next(b for b in config.budgets if b.id == budget_id)
    return redis_keys.budget(budget.id, budget.window_at(datetime.now(UTC)).id)


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# --- budgets ------------------------------------------------------------------------------------


def test_listing_shows_each_budget_in_its_current_window(api, config, redis_client):
    for budget in config.budgets:  # as if the ledger had been read: nothing spent yet
        redis_client.hset(budget_key(config, budget.id), "loaded", 1)
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = today.replace(day=1)
    listed = api.get("/v1/admin/budgets", headers=ADMIN).json()["budgets"]
    assert listed == [
        {
            "id": "product/daily",
            "team": "product",
            "feature": None,
            "window": "daily",
            "window_start": iso(today),
            "window_end": iso(today + timedelta(days=1)),
            "limit_micros": 1_000_000,
            "limit_source": "config",
            "spent_micros": 0,
            "reserved_micros": 0,
            "remaining_micros": 1_000_000,
            "limit_usd": "$1.0000",
            "spent_usd": "$0.0000",
            "reserved_usd": "$0.0000",
            "remaining_usd": "$1.0000",
        },
        {
            "id": "product/search/monthly",
            "team": "product",
            "feature": "search",
            "window": "monthly",
            "window_start": iso(month),
            "window_end": iso((month + timedelta(days=32)).replace(day=1)),
            "limit_micros": 5_000_000,
            "limit_source": "config",
            "spent_micros": 0,
            "reserved_micros": 0,
            "remaining_micros": 5_000_000,
            "limit_usd": "$5.0000",
            "spent_usd": "$0.0000",
            "reserved_usd": "$0.0000",
            "remaining_usd": "$5.0000",
        },
    ]


def test_spent_and_reserved_are_what_redis_holds(api, config, redis_client):
    key = budget_key(config, "product/daily")
    redis_client.hset(key, mapping={"spent": 250_000, "reserved": 100_000, "loaded": 1})
    daily = budgets(api)["product/daily"]
    assert (daily["spent_micros"], daily["reserved_micros"]) == (250_000, 100_000)
    assert daily["remaining_micros"] == 650_000 and daily["remaining_usd"] == "$0.6500"
    assert daily["spent_usd"] == "$0.2500" and daily["reserved_usd"] == "$0.1000"

    redis_client.hset(key, mapping={"spent": 900_000, "reserved": 300_000})
    over = budgets(api)["product/daily"]
    assert over["remaining_micros"] == 0 and over["remaining_usd"] == "$0.0000", "floored at 0"
    assert budgets(api)["product/search/monthly"]["reserved_micros"] == 0


def test_a_budget_redis_lacks_is_loaded_from_the_ledger(api, config, db, redis_client):
    def charge(feature: str, cost: int) -> None:
        body = {
            "feature": feature,
            "requests": [{"custom_id": "r", "model": "gpt-4o-mini",
                          "messages": [{"role": "user", "content": "x"}]}],
        }  # fmt: skip
        job = api.post("/v1/jobs", json=body, headers=PRODUCT).json()
        with db.session() as s:
            request_id = s.scalar(select(Request.id).where(Request.job_id == job["id"]))
            s.add(LedgerEntry(
                request_id=request_id, attempt=1, job_id=job["id"], team_id="product",
                feature=feature, model="gpt-4o-mini", provider="sim-openai", input_tokens=1,
                cached_input_tokens=0, output_tokens=1, cost_micros=cost,
            ))  # fmt: skip

    charge("search", 30_000)
    before = budgets(api)
    assert before["product/daily"]["spent_micros"] >= 30_000
    assert before["product/search/monthly"]["spent_micros"] >= 30_000

    charge("search", 4_000)
    charge("chatbot", 500)
    assert budgets(api) == before, "once loaded, Redis is the fast path"

    for budget in config.budgets:  # Redis lost its data
        redis_client.delete(budget_key(config, budget.id))
    after = budgets(api)
    grew = {i: after[i]["spent_micros"] - before[i]["spent_micros"] for i in after}
    assert grew == {"product/daily": 4_500, "product/search/monthly": 4_000}, "search only: 4_000"


def test_set_limit_overrides_and_delete_reverts(api, config, db):
    resp = api.put(
        "/v1/admin/budgets/product/daily/limit", json={"limit_usd": "12.50"}, headers=ADMIN
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["id"], body["limit_source"]) == ("product/daily", "override")
    assert (body["limit_micros"], body["limit_usd"]) == (12_500_000, "$12.5000")
    listed = budgets(api)
    assert listed["product/daily"]["limit_micros"] == 12_500_000
    assert listed["product/daily"]["limit_source"] == "override"
    assert listed["product/search/monthly"]["limit_source"] == "config"
    assert BudgetLimits(db, config, refresh_s=0)()["product/daily"] == 12_500_000, "scheduler"

    path = "/v1/admin/budgets/product/search/monthly/limit"
    again = api.put(path, json={"limit_usd": 7.25}, headers=ADMIN)
    assert again.status_code == 200 and again.json()["limit_micros"] == 7_250_000, "a number too"
    updated = api.put(path, json={"limit_usd": "8"}, headers=ADMIN)
    assert updated.json()["limit_micros"] == 8_000_000, "a second PUT updates the row"
    with db.session() as s:
        rows = dict(s.execute(select(BudgetLimit.budget_id, BudgetLimit.limit_micros)).all())
    assert rows == {"product/daily": 12_500_000, "product/search/monthly": 8_000_000}

    resp = api.delete("/v1/admin/budgets/product/daily/limit", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert (resp.json()["limit_micros"], resp.json()["limit_source"]) == (1_000_000, "config")
    assert budgets(api)["product/daily"]["limit_source"] == "config"
    assert api.delete("/v1/admin/budgets/product/daily/limit", headers=ADMIN).status_code == 200
    assert BudgetLimits(db, config, refresh_s=0)() == {
        "product/daily": 1_000_000,
        "product/search/monthly": 8_000_000,
    }


def test_unknown_budget_is_404_naming_the_known_ones(api):
    for resp in (
        api.put("/v1/admin/budgets/product/weekly/limit", json={"limit_usd": 1}, headers=ADMIN),
        api.delete("/v1/admin/budgets/product/weekly/limit", headers=ADMIN),
        api.delete("/v1/admin/budgets/nope/limit", headers=ADMIN),
    ):
        assert resp.status_code == 404, resp.text
        error = resp.json()["error"]
        assert error["type"] == "not_found"
        assert "no budget" in error["message"]
        assert "product/daily, product/search/monthly" in error["message"]


@pytest.mark.parametrize(
    ("amount", "words"),
    [(0, "greater than 0"), ("-1", "greater than 0"), ("abc", "valid decimal"),
     (1_000_001, "less than or equal to 1000000"), (None, "Decimal input"),
     ("0.0000001", "6 decimal places"), (float("nan"), "finite number"), (True, "Decimal input")],
)  # fmt: skip
def test_a_bad_amount_is_422_naming_the_field(api, amount, words):
    body = json.dumps({"limit_usd": amount})  # the stdlib writes NaN, as a careless client might
    headers = {**ADMIN, "Content-Type": "application/json"}
    resp = api.put("/v1/admin/budgets/product/daily/limit", content=body, headers=headers)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["field"] == "limit_usd" and words in error["message"]
    assert budgets(api)["product/daily"]["limit_source"] == "config"


def test_without_budgets_the_listing_is_empty(settings, redis_client, clean_rows):
    with TestClient(create_app(settings)) as client:
        resp = client.get("/v1/admin/budgets", headers=ADMIN)
        assert resp.status_code == 200 and resp.json() == {"budgets": []}
        resp = client.put("/v1/admin/budgets/product/daily/limit", json={"limit_usd": 1},
                          headers=ADMIN)  # fmt: skip
        assert resp.status_code == 404 and "(known: none)" in resp.json()["error"]["message"]


# --- pauses -------------------------------------------------------------------------------------


def paused_in_db(db) -> dict[str, str | None]:
    with db.session() as s:
        return dict(s.execute(select(TeamSetting.team_id, TeamSetting.paused_reason)).all())


def test_pause_and_resume_show_in_teams_and_are_stored(api, db):
    assert {t["paused"] for t in teams(api).values()} == {False}
    assert teams(api)["product"]["paused_reason"] is None

    resp = api.post(
        "/v1/admin/teams/product/pause", json={"reason": "runaway agent"}, headers=ADMIN
    )
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"team": "product", "paused": True, "reason": "runaway agent",
                           "changed": True}  # fmt: skip
    listed = teams(api)
    product = listed["product"]
    assert (product["paused"], product["paused_reason"]) == (True, "runaway agent")
    assert listed["content"]["paused"] is False
    assert paused_in_db(db) == {"product": "runaway agent"}

    again = api.post("/v1/admin/teams/product/pause", json={"reason": "other"}, headers=ADMIN)
    assert again.json() == {"team": "product", "paused": True, "reason": "runaway agent",
                            "changed": False}, "the first reason stays"  # fmt: skip

    resp = api.post("/v1/admin/teams/product/resume", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"team": "product", "paused": False, "reason": None, "changed": True}
    assert teams(api)["product"]["paused"] is False
    assert paused_in_db(db) == {"product": None}
    again = api.post("/v1/admin/teams/product/resume", headers=ADMIN)
    assert again.json()["changed"] is False


def test_pause_without_a_body_gives_the_default_reason(api, db):
    resp = api.post("/v1/admin/teams/content/pause", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json()["reason"] == "paused by an operator"
    assert paused_in_db(db) == {"content": "paused by an operator"}
    resp = api.post("/v1/admin/teams/platform/pause", json={}, headers=ADMIN)
    assert resp.json()["reason"] == "paused by an operator"
    resp = api.post("/v1/admin/teams/platform/pause", json={"reason": ""}, headers=ADMIN)
    assert resp.status_code == 422 and resp.json()["error"]["field"] == "reason"


def test_pause_and_resume_alert_once_each(api):
    api.post("/v1/admin/teams/product/pause", json={"reason": "too fast"}, headers=ADMIN)
    api.post("/v1/admin/teams/product/pause", headers=ADMIN)
    api.post("/v1/admin/teams/product/resume", headers=ADMIN)
    api.post("/v1/admin/teams/product/resume", headers=ADMIN)
    alerts = api.get("/v1/admin/alerts", headers=ADMIN).json()["alerts"]
    assert [(a["type"], a["team"], a["message"]) for a in alerts] == [
        ("resumed", "product", "team product resumed by an operator"),
        ("paused", "product", "team product paused: too fast"),
    ]


def test_unknown_team_is_404_on_pause_resume_and_alerts(api):
    for resp in (
        api.post("/v1/admin/teams/nope/pause", headers=ADMIN),
        api.post("/v1/admin/teams/nope/resume", headers=ADMIN),
        api.get("/v1/admin/alerts", params={"team": "nope"}, headers=ADMIN),
    ):
        assert resp.status_code == 404, resp.text
        message = resp.json()["error"]["message"]
        assert "'nope'" in message and "content, platform, product" in message


# --- alerts -------------------------------------------------------------------------------------


def test_alerts_are_newest_first_with_details_and_filter_by_team(api, config, redis_client):
    alerts = Alerts(redis_client, config)
    alerts.fire("product", "budget_threshold", "budget product/daily at 80%",
                budget="product/daily", threshold=0.8, spent_micros=800_000)  # fmt: skip
    alerts.fire("content", "paused", "team content paused: spend velocity")
    alerts.fire("product", "budget_threshold", "budget product/daily at 100%", threshold=1.0)

    listed = api.get("/v1/admin/alerts", headers=ADMIN).json()["alerts"]
    assert [a["message"] for a in listed] == [
        "budget product/daily at 100%",
        "team content paused: spend velocity",
        "budget product/daily at 80%",
    ]
    oldest = listed[-1]
    assert oldest["budget"] == "product/daily" and oldest["spent_micros"] == 800_000
    assert datetime.fromisoformat(oldest["at"]) <= datetime.now(UTC)

    product = api.get("/v1/admin/alerts", params={"team": "product"}, headers=ADMIN).json()
    assert [a["threshold"] for a in product["alerts"]] == [1.0, 0.8]
    one = api.get("/v1/admin/alerts", params={"team": "product", "limit": 1}, headers=ADMIN)
    assert [a["threshold"] for a in one.json()["alerts"]] == [1.0]
    assert api.get("/v1/admin/alerts", params={"team": "platform"}, headers=ADMIN).json() == {
        "alerts": []
    }
    bad = api.get("/v1/admin/alerts", params={"limit": 0}, headers=ADMIN)
    assert bad.status_code == 422 and bad.json()["error"]["field"] == "limit"


# --- who gets in --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status"),
    [(PRODUCT, 403), ({}, 401), ({"Authorization": "Bearer ib-dev-wrong"}, 401)],
    ids=["team-key", "no-key", "wrong-key"],
)
def test_only_the_admin_key_gets_in(api, db, headers, status):
    for method, path, body in [
        ("GET", "/v1/admin/budgets", None),
        ("PUT", "/v1/admin/budgets/product/daily/limit", {"limit_usd": "99"}),
        ("DELETE", "/v1/admin/budgets/product/daily/limit", None),
        ("POST", "/v1/admin/teams/product/pause", {"reason": "x"}),
        ("POST", "/v1/admin/teams/product/resume", None),
        ("GET", "/v1/admin/alerts", None),
    ]:
        resp = api.request(method, path, json=body, headers=headers)
        assert resp.status_code == status, (method, path, resp.text)
        if status == 403:
            assert "admin endpoints need the admin key" in resp.json()["error"]["message"]
    assert budgets(api)["product/daily"]["limit_source"] == "config", "nothing was written"
    assert paused_in_db(db) == {}
