"""What a team may not submit now gets a 429 with ``retry-after``: its runaway guard, or a spent
budget under the ``reject`` policy. On the real API, Redis and database."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broker import redis_keys
from broker.api import create_app
from broker.config.broker_toml import DEFAULT_CONFIG
from broker.config.budgets import BudgetConfig

TEAMS = {
    "product": 'rpm = 5\nbudget_policy = "reject"',
    "content": 'budget_policy = "hold"\n[teams.feature_limits.translation]\nrpm = 2',
}
BUDGETS = """
[[budgets]]
team = "product"
limit_usd = "1.00"

[[budgets]]
team = "content"
limit_usd = "1.00"
"""


@pytest.fixture
def api(settings, tmp_path: Path, redis_client, migrated_database_url):
    text = DEFAULT_CONFIG.read_text()
    for team, lines in TEAMS.items():
        # After the team's key line: the table's last plain key, before any sub-table.
        start = text.index(f'id = "{team}"')
        end = text.index("\n", text.index("api_key_sha256", start))
        text = text[:end] + "\n" + lines + text[end:]
    path = tmp_path / "broker.toml"
    path.write_text(text + BUDGETS)
    with TestClient(create_app(settings.model_copy(update={"config_path": path}))) as client:
        yield client


def submit(api: TestClient, key: str, n: int, feature: str = "search"):
    body = {
        "feature": feature,
        "requests": [
            {
                "custom_id": f"r{i}",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hi"}],
            }
            for i in range(n)
        ],
    }
    return api.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {key}"})


def test_a_team_over_its_requests_per_minute_gets_429_with_retry_after(api):
    assert submit(api, "ib-dev-product", 3).status_code == 201
    refused = submit(api, "ib-dev-product", 3)
    assert refused.status_code == 429
    assert refused.json()["error"]["type"] == "rate_limited"
    assert "product" in refused.json()["error"]["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert submit(api, "ib-dev-platform", 10).status_code == 201, "other teams are not limited"


def test_a_features_own_limit_applies_to_that_feature_only(api):
    assert submit(api, "ib-dev-content", 2, feature="translation").status_code == 201
    assert submit(api, "ib-dev-content", 1, feature="translation").status_code == 429
    assert submit(api, "ib-dev-content", 5, feature="summarization").status_code == 201


def test_a_spent_budget_under_reject_gets_429_and_under_hold_is_queued(api, redis_client):
    window = BudgetConfig(team="x", limit_usd=1).window_at(datetime.now(UTC))
    for team in ("product", "content"):
        key = redis_keys.budget(f"{team}/daily", window.id)
        redis_client.hset(key, mapping={"spent": 1_000_000, "reserved": 0, "loaded": 1})
    refused = submit(api, "ib-dev-product", 1)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert "product/daily" in error["message"] and "$1.0000" in error["message"]
    assert int(refused.headers["retry-after"]) <= 24 * 3600
    assert submit(api, "ib-dev-content", 1).status_code == 201, "hold: it waits its window"
