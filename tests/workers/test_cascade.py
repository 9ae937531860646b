"""A cascade's review of a cheaper tier's answer: accept, escalate, or (shadow) only record."""

from __future__ import annotations

import pytest

from broker.config.broker_toml import load_config, parse_config
from broker.schemas.http import RequestIn
from broker.store.transitions import Claimed, Outcome
from broker.submission import payload_of
from workers.cascade import review
from workers.validators import judge

CHECKS = ["empty", "refusal", "truncated", "json", "answer_format"]


def claimed(model: str, prompt: str, route: str | None = "auto") -> Claimed:
    payload = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 64}
    decision = {"route": "auto", "tier": 0, "model": model, "layer": "learned"}
    return Claimed(
        "req_j_0",
        "job_j",
        "product",
        "chatbot",
        model,
        1,
        payload,
        route=route,
        route_decision=decision,
    )


def outcome(model: str, text: str, finish: str = "stop") -> Outcome:
    return Outcome(
        model=model,
        provider="sim-openai",
        latency_ms=5,
        output=text,
        finish_reason=finish,
        cost_micros=40,
    )


def config_with(shadow: bool):
    data = load_config().model_dump(mode="json")
    data["routes"][0]["cascade"] = {"checks": CHECKS, "shadow": shadow}
    return parse_config(data)


def test_a_turned_down_answer_escalates_to_the_next_tier():
    config = config_with(shadow=False)
    kept, escalation = review(
        config,
        claimed("gpt-4o-mini", "Respond in JSON: list two colours"),
        outcome("gpt-4o-mini", "red and blue"),
    )
    assert escalation is not None and escalation.next_model == "gpt-4o"
    check = escalation.route_decision["checks"][0]
    assert (check["accept"], check["check"], check["shadow"]) == (False, "json", False)
    assert escalation.route_decision["escalated"] and escalation.route_decision["tier"] == 1


def test_shadow_mode_records_the_verdict_and_keeps_the_answer():
    config = config_with(shadow=True)
    kept, escalation = review(
        config, claimed("gpt-4o-mini", "Respond in JSON please"), outcome("gpt-4o-mini", "no")
    )
    assert escalation is None
    assert kept.route_decision["checks"][0]["check"] == "json"


def test_a_good_answer_and_the_last_tier_stand():
    config = config_with(shadow=False)
    kept, escalation = review(
        config, claimed("gpt-4o-mini", "Respond in JSON"), outcome("gpt-4o-mini", '{"a": 1}')
    )
    assert escalation is None and kept.route_decision["checks"][0]["accept"]
    last, escalation = review(config, claimed("gpt-4o", "Respond in JSON"), outcome("gpt-4o", "no"))
    assert escalation is None and last.route_decision is None  # nothing above it: no checks
    plain, escalation = review(
        config, claimed("gpt-4o-mini", "x", route=None), outcome("gpt-4o-mini", "")
    )
    assert escalation is None  # not routed: no cascade


@pytest.mark.parametrize(
    ("text", "finish", "prompt", "check"),
    [
        ("   ", "stop", "hi", "empty"),
        ("I'm sorry, but I can't help with that.", "stop", "hi", "refusal"),
        ("As an AI, I cannot know.", "stop", "hi", "refusal"),
        ("the answer is", "length", "hi", "truncated"),
        ("not json", "stop", "Return the result as JSON.", "json"),
        ("the total is 12", "stop", "Solve it and end with #### <number>", "answer_format"),
        ("I think it is the second one", "stop", "Answer with a single letter.", "answer_format"),
    ],
)
def test_each_check_turns_down_what_it_should(text, finish, prompt, check):
    verdict = judge(text, finish, {"messages": [{"content": prompt}]}, CHECKS)
    assert (verdict.accept, verdict.check) == (False, check)


@pytest.mark.parametrize(
    ("text", "prompt"),
    [
        ("Paris.", "What is the capital of France?"),
        ('```json\n{"colour": "red"}\n```', "Respond in JSON."),
        ("She has 3 + 4 = 7 apples.\n#### 7", "How many apples? End with #### <number>"),
        ("B", "Answer with a single letter."),
        ("Sorry to hear that! Here is how to reset it: ...", "My password is lost"),
    ],
)
def test_good_answers_pass(text, prompt):
    assert judge(text, "stop", {"messages": [{"content": prompt}]}, CHECKS).accept


@pytest.mark.parametrize(
    "form",
    [
        {"type": "json_object"},
        {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}}},
    ],
)
def test_the_json_check_reads_the_stored_response_format(form):
    request = RequestIn(
        custom_id="r",
        messages=[{"role": "user", "content": "Name a river."}],  # no "JSON" in words
        response_format=form,
    )
    payload = payload_of(request)
    assert judge("The Nile", "stop", payload, ["json"]).check == "json"
    assert judge('{"river": "Nile"}', "stop", payload, ["json"]).accept
    plain = payload_of(request.model_copy(update={"response_format": None}))
    assert judge("The Nile", "stop", plain, ["json"]).accept  # text asked for: no check
