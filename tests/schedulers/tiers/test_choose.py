"""Choosing a route's tier in layers: hint, pin, rules, learned router, default."""

from __future__ import annotations

import json

from broker.config.routes import RouteConfig
from schedulers.tiers.choose import TierChooser

AUTO = RouteConfig(
    name="auto",
    tiers=["gpt-4o-mini", "gpt-4o"],
    rules=[
        {"when": "code_block", "tier": 1},
        {"when": "max_tokens_over", "value": 2000, "tier": 1},
        {"when": "pattern", "value": r"(?i)\bprove\b", "tier": 1},
        {"when": "chars_over", "value": 5000, "tier": 1},
    ],
    pins=[
        {"feature": "classification", "tier": 0},
        {"team": "platform", "feature": "x", "tier": 1},
    ],
    learned="off",
)


def choose(
    text="hello", route=AUTO, *, team="product", feature="chatbot", max_tokens=100, meta=None
):
    messages = [{"role": "user", "content": text}]
    return TierChooser().choose(route, team, feature, messages, max_tokens, meta)


def test_a_hint_wins_then_a_pin_then_the_rules():
    assert (choose(meta={"tier": 1}).tier, choose(meta={"tier": 1}).layer) == (1, "hint")
    assert choose(meta={"tier": "gpt-4o"}).model == "gpt-4o"
    assert choose(meta={"tier": 7}).layer == "default"  # a hint naming no tier is ignored
    pinned = choose("```python\nprint(1)\n```", feature="classification")
    assert (pinned.tier, pinned.layer) == (0, "pin")
    assert choose(team="platform", feature="x").tier == 1
    assert choose("```python\nprint(1)\n```").reason.startswith("rules[0]")
    assert choose(max_tokens=4000).reason.startswith("rules[1]")
    assert choose("Prove that it halts").reason.startswith("rules[2]")
    assert choose("a" * 6000).reason.startswith("rules[3]")
    plain = choose("What is the capital of France?")
    assert (plain.tier, plain.layer, plain.model) == (0, "default", "gpt-4o-mini")


def test_the_shipped_learned_router_decides_and_says_its_score():
    route = AUTO.model_copy(update={"learned": "default", "rules": [], "pins": []})
    decision = choose("What is 2 + 2?", route)
    assert decision.layer == "learned" and 0.0 <= decision.score <= 1.0
    assert decision.model in route.tiers
    cheap = route.model_copy(update={"strong_share": 0.0})
    assert choose("What is 2 + 2?", cheap).tier == 0


def test_a_router_that_cannot_load_sends_the_request_to_the_strongest_tier(tmp_path):
    broken = tmp_path / "router.json"
    broken.write_text(json.dumps({"not": "a router"}))
    route = AUTO.model_copy(update={"learned": str(broken), "rules": [], "pins": []})
    decision = choose("anything", route)
    assert (decision.tier, decision.layer) == (1, "default")
    assert "unavailable" in decision.reason
