"""Where the ``downgrade`` budget policy may move a request: down its model's fallback chain,
then down the tiers of the route it named; and the route travels on its queue entry."""

from __future__ import annotations

import pytest

from broker.config.broker_toml import DEFAULT_CONFIG, load_config
from broker.queues import QueueEntry
from schedulers.budget_policy import downgrades


@pytest.fixture(scope="module")
def config():
    return load_config(DEFAULT_CONFIG)


def entry(model: str, route: str = "-", **fields) -> QueueEntry:
    return QueueEntry("job_1-0", model, 400, 64, 1_000, "search", route=route, **fields)


def test_a_model_named_directly_goes_down_its_own_chain_only(config):
    assert downgrades(config, entry("gpt-4o-mini")) == ["claude-haiku-4-5", "gpt-4.1-nano"]
    assert downgrades(config, entry("gpt-4o")) == []  # gpt-4o's chain is gpt-4o alone


def test_a_routed_request_goes_down_the_routes_tiers_after_its_chain(config):
    # auto: gpt-4o-mini (tier 0), gpt-4o (tier 1); the lower tier comes with its chain.
    assert downgrades(config, entry("gpt-4o", route="auto")) == [
        "gpt-4o-mini",
        "claude-haiku-4-5",
        "gpt-4.1-nano",
    ]


def test_the_cheapest_tier_has_nowhere_further_down_the_route(config):
    assert downgrades(config, entry("gpt-4o-mini", route="auto")) == [
        "claude-haiku-4-5",
        "gpt-4.1-nano",
    ]


def test_a_route_no_longer_configured_leaves_the_chain(config):
    assert downgrades(config, entry("gpt-4o", route="gone")) == []


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"chain_index": 2},
        {"cache": "abc/60/rw"},
        {"route": "auto"},
        {"chain_index": 1, "route": "auto"},
        {"cache": "abc/60/r", "route": "auto"},
    ],
)
def test_the_route_survives_the_queue_line(fields):
    one = QueueEntry("job_1-0", "gpt-4o", 400, 64, 1_000, "search", "trace-1", **fields)
    assert QueueEntry.decode(one.encode()) == one
