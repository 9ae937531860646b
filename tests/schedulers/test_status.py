"""schedulers.status: the operators' view of fairness, read from a real Redis."""

from __future__ import annotations

import pytest

from broker import redis_keys
from broker.config.broker_toml import load_config
from schedulers.status import team_status


@pytest.fixture
def config():
    return load_config()


def test_an_empty_redis_shows_the_config_teams_at_zero(redis_client, config):
    statuses = team_status(redis_client, config, {})
    assert [s.team for s in statuses] == ["content", "platform", "product"]
    assert all(s.counter == 0 and s.queued == 0 and s.share == 0 for s in statuses)
    assert [(s.weight, s.weight_source) for s in statuses] == [
        (1.0, "config"),
        (2.0, "config"),
        (1.0, "config"),
    ]


def test_counters_backlog_service_and_overrides(redis_client, config):
    redis_client.hset(redis_keys.fair_counters(), mapping={"product": 10.5, "content": 4})
    redis_client.hset(redis_keys.service_received(), mapping={"product": 30, "content": 10})
    redis_client.rpush(redis_keys.team_queue("content", "high"), "a", "b")
    redis_client.rpush(redis_keys.team_queue("content", "low"), "c")
    redis_client.rpush(redis_keys.parked("content"), "medium d")

    by_team = {s.team: s for s in team_status(redis_client, config, {"product": 4.0})}
    product, content = by_team["product"], by_team["content"]
    assert (product.weight, product.weight_source, product.counter) == (4.0, "override", 10.5)
    assert (product.service, product.share) == (30.0, 0.75)
    assert content.backlog == {"high": 2, "medium": 0, "low": 1}
    assert (content.parked, content.queued) == (1, 4)
    assert product.parked == 0
    assert content.share == 0.25 and by_team["platform"].share == 0.0


def test_a_team_gone_from_the_config_still_shows_while_it_has_state(redis_client, config):
    """It drains at weight 1, as the scheduler loop gives it, until an override says otherwise."""
    redis_client.hset(redis_keys.fair_counters(), "legacy", 7)
    redis_client.hset(redis_keys.service_received(), "retired", 5)
    redis_client.rpush(redis_keys.team_queue("legacy", "medium"), "x")

    statuses = team_status(redis_client, config, {})
    assert [s.team for s in statuses] == ["content", "legacy", "platform", "product", "retired"]
    legacy = statuses[1]
    assert (legacy.weight, legacy.weight_source, legacy.counter) == (1.0, "default", 7.0)
    assert legacy.backlog["medium"] == 1
    assert statuses[4].share == 1.0
    overridden = {s.team: s for s in team_status(redis_client, config, {"legacy": 3.0})}
    assert overridden["legacy"].weight_source == "override"
