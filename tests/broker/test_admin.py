"""``/v1/admin`` in-process (FastAPI TestClient) on a real Redis and a real database."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import delete

from broker import redis_keys
from broker.api import create_app
from broker.config.broker_toml import DEFAULT_CONFIG, hash_api_key, load_config
from broker.config.settings import Settings
from broker.store import TeamSetting

ADMIN = {"Authorization": "Bearer ib-dev-admin"}
PRODUCT = {"Authorization": "Bearer ib-dev-product"}


@pytest.fixture
def clean_settings(db):
    """Overrides live in the session's shared database: every test starts and ends without."""
    db.write(lambda s: s.execute(delete(TeamSetting)))
    yield
    db.write(lambda s: s.execute(delete(TeamSetting)))


@pytest.fixture
def api(settings: Settings, redis_client, clean_settings) -> TestClient:
    with TestClient(create_app(settings)) as client:
        yield client


def teams(api: TestClient) -> dict[str, dict]:
    resp = api.get("/v1/admin/teams", headers=ADMIN)
    assert resp.status_code == 200, resp.text
    return {t["team"]: t for t in resp.json()["teams"]}


def submit(api: TestClient, n: int, priority: str = "medium") -> None:
    message = {"role": "user", "content": "x"}
    requests = [
        {"custom_id": f"r{i}", "model": "gpt-4o-mini", "messages": [message]} for i in range(n)
    ]
    resp = api.post(
        "/v1/jobs",
        json={"feature": "chatbot", "priority": priority, "requests": requests},
        headers=PRODUCT,
    )
    assert resp.status_code == 201, resp.text


def test_listing_shows_every_team_with_its_config_weight(api):
    listed = api.get("/v1/admin/teams", headers=ADMIN).json()["teams"]
    assert [t["team"] for t in listed] == ["content", "platform", "product"]
    platform = listed[1]
    assert platform == {
        "team": "platform",
        "weight": 2.0,
        "weight_source": "config",
        "counter": 0.0,
        "backlog": {"high": 0, "medium": 0, "low": 0},
        "parked": 0,
        "queued": 0,
        "service": 0.0,
        "share": 0.0,
        "paused": False,
        "paused_reason": None,
    }


def test_set_weight_overrides_and_delete_reverts(api, db):
    resp = api.put("/v1/admin/teams/product/weight", json={"weight": 3.5}, headers=ADMIN)
    assert resp.status_code == 200, resp.text
    assert resp.json()["weight"] == 3.5 and resp.json()["weight_source"] == "override"
    listed = teams(api)
    assert (listed["product"]["weight"], listed["product"]["weight_source"]) == (3.5, "override")
    assert listed["content"]["weight_source"] == "config"

    again = api.put("/v1/admin/teams/product/weight", json={"weight": 5}, headers=ADMIN)
    assert again.json()["weight"] == 5.0, "a second PUT updates the row"

    resp = api.delete("/v1/admin/teams/product/weight", headers=ADMIN)
    assert resp.status_code == 200
    assert (resp.json()["weight"], resp.json()["weight_source"]) == (1.0, "config")
    assert teams(api)["product"]["weight_source"] == "config"
    assert api.delete("/v1/admin/teams/product/weight", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    ("headers", "status", "type_", "words"),
    [
        (PRODUCT, 403, "permission_error", "admin endpoints need the admin key"),
        ({}, 401, "authentication_error", "Authorization: Bearer"),
        ({"Authorization": "Bearer ib-dev-wrong"}, 401, "authentication_error", "unknown API key"),
    ],
    ids=["team-key", "no-key", "wrong-key"],
)
def test_only_the_admin_key_gets_in(api, headers, status, type_, words):
    for method, path, body in [
        ("GET", "/v1/admin/teams", None),
        ("PUT", "/v1/admin/teams/product/weight", {"weight": 9}),
        ("DELETE", "/v1/admin/teams/product/weight", None),
    ]:
        resp = api.request(method, path, json=body, headers=headers)
        assert resp.status_code == status, (method, resp.text)
        error = resp.json()["error"]
        assert error["type"] == type_ and words in error["message"]
    assert teams(api)["product"]["weight_source"] == "config", "nothing was written"


def test_unknown_team_is_404_naming_the_known_ones(api):
    for resp in (
        api.put("/v1/admin/teams/nope/weight", json={"weight": 2}, headers=ADMIN),
        api.delete("/v1/admin/teams/nope/weight", headers=ADMIN),
    ):
        assert resp.status_code == 404
        error = resp.json()["error"]
        assert error["type"] == "not_found"
        assert "'nope'" in error["message"] and "content, platform, product" in error["message"]


@pytest.mark.parametrize(
    ("weight", "words"),
    [
        (0, "greater than or equal to 0.001"),
        (-1, "greater than or equal to 0.001"),
        (
            5e-324,
            "greater than or equal to 0.001",
        ),  # the fuzzer's: a counter divided by it overflows
        ("abc", "valid number"),
        (1001, "less than or equal to 1000"),
        (None, "valid number"),
        (float("nan"), "finite number"),
    ],
)
def test_a_bad_weight_is_422_naming_the_field(api, weight, words):
    body = json.dumps({"weight": weight})  # the stdlib writes NaN, as a careless client might
    headers = {**ADMIN, "Content-Type": "application/json"}
    resp = api.put("/v1/admin/teams/product/weight", content=body, headers=headers)
    assert resp.status_code == 422
    error = resp.json()["error"]
    assert error["field"] == "weight" and words in error["message"]
    assert teams(api)["product"]["weight_source"] == "config"


def test_a_pause_reason_with_a_nul_character_is_422(api):
    """PostgreSQL cannot store a NUL: this was a 503, "the database is unreachable"."""
    resp = api.post("/v1/admin/teams/product/pause", json={"reason": "x\x00"}, headers=ADMIN)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert error["field"] == "reason" and "NUL" in error["message"]
    assert teams(api)["product"]["paused"] is False


def test_backlog_counts_what_was_submitted(api):
    submit(api, 3, "high")
    submit(api, 2, "low")
    product = teams(api)["product"]
    assert product["backlog"] == {"high": 3, "medium": 0, "low": 2}
    assert product["queued"] == 5
    assert teams(api)["content"]["queued"] == 0


def test_share_is_each_teams_part_of_all_service(api, redis_client):
    redis_client.hset(redis_keys.service_received(), mapping={"product": 300, "content": 100})
    redis_client.hset(redis_keys.fair_counters(), mapping={"product": 300, "platform": 12.5})
    listed = teams(api)
    assert listed["product"]["share"] == 0.75 and listed["content"]["share"] == 0.25
    assert listed["platform"]["share"] == 0.0
    assert listed["product"]["service"] == 300.0
    assert listed["platform"]["counter"] == 12.5 and listed["content"]["counter"] == 0.0


def test_without_an_admin_key_configured_the_admin_api_is_disabled(
    settings, redis_client, tmp_path
):
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    line = f'admin_api_key_sha256 = "{hash_api_key("ib-dev-admin")}"\n'
    assert line in text
    path = tmp_path / "broker.toml"
    path.write_text(text.replace(line, ""), encoding="utf-8")
    without = settings.model_copy(update={"config_path": path})
    assert without.config.admin_api_key_sha256 is None
    with TestClient(create_app(without)) as client:
        for headers in (ADMIN, {}):
            resp = client.get("/v1/admin/teams", headers=headers)
            assert resp.status_code == 403
            message = resp.json()["error"]["message"]
            assert "disabled" in message and "admin_api_key_sha256" in message


def test_the_packaged_config_has_the_public_dev_admin_key():
    assert load_config().admin_api_key_sha256 == hash_api_key("ib-dev-admin")
