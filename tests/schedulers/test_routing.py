"""Where a request may run: its model's chain from its position in it."""

from __future__ import annotations

import pytest

from broker.config.broker_toml import load_config
from schedulers.routing import Router

MINI = ("sim-openai", "gpt-4o-mini")
HAIKU = ("sim-anthropic", "claude-haiku-4-5")
NANO = ("sim-openai", "gpt-4.1-nano")


@pytest.fixture
def router() -> Router:
    return Router(load_config())


@pytest.mark.parametrize(
    ("chain_index", "expected"),
    [
        (0, [MINI, HAIKU, NANO]),
        (1, [HAIKU, NANO]),
        (2, [NANO]),
        (3, [NANO]),  # past the end: the last model
        (99, [NANO]),
    ],
)
def test_the_chain_from_each_position(router, chain_index, expected):
    assert router.routes("gpt-4o-mini", chain_index) == expected


def test_the_default_position_is_the_head(router):
    assert router.routes("gpt-4o-mini") == [MINI, HAIKU, NANO]


def test_a_model_without_fallbacks_is_its_own_chain(router):
    assert router.routes("gpt-4o") == [("sim-openai", "gpt-4o")]
    assert router.routes("gpt-4o", 1) == [("sim-openai", "gpt-4o")]
    assert router.routes("claude-sonnet-4-5", 4) == [("sim-anthropic", "claude-sonnet-4-5")]


def test_a_model_gone_from_the_catalog_has_no_route(router):
    assert router.routes("gpt-9") is None
    assert router.routes("gpt-9", 1) is None


def test_routes_are_computed_once_per_position(router):
    assert router.routes("gpt-4o-mini", 1) is router.routes("gpt-4o-mini", 1)
    assert router.routes("gpt-4o-mini", 0) is not router.routes("gpt-4o-mini", 1)
