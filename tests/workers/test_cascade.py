"""A cascade's review of a cheaper tier's answer: accept, escalate, or (shadow) only record."""

from __future__ import annotations

import pytest

from broker.config.broker_toml import load_config, parse_config
from broker.errors import ConfigError
from broker.schemas.http import RequestIn
from broker.store.transitions import Call, Claimed, Outcome
from broker.submission import payload_of
from workers.cascade import review
from workers.validators import Verdict, judge

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


# --- the LLM judge (workers.judge): asked only for what the checks accept, billed ------------


def judged_config(shadow: bool = False, judge_model: str = "gpt-4.1-nano"):
    data = load_config().model_dump(mode="json")
    data["routes"][0]["cascade"] = {"checks": CHECKS, "shadow": shadow, "judge": judge_model}
    return parse_config(data)


class FakeJudge:
    """Says ``verdict``, at a cost of 7 micro-dollars, and remembers what it read."""

    def __init__(self, verdict: Verdict) -> None:
        self.verdict, self.read = verdict, []

    def __call__(self, cascade, asked, answer):
        self.read.append((cascade.judge, answer))
        return self.verdict, (Call(cascade.judge, "sim-openai", "succeeded", 3, cost_micros=7),)


def test_the_judge_reads_what_the_checks_accept_and_its_call_is_billed():
    ask = FakeJudge(Verdict(False, "judge", "the judge escalates: wrong sum"))
    kept, escalation = review(
        judged_config(), claimed("gpt-4o-mini", "What is 2+2?"), outcome("gpt-4o-mini", "5"), ask
    )
    assert ask.read == [("gpt-4.1-nano", "5")]
    assert escalation is not None and escalation.next_model == "gpt-4o"
    assert escalation.route_decision["checks"][0]["check"] == "judge"
    assert kept.cost_micros == 40 + 7 and kept.calls[-1].model == "gpt-4.1-nano"


def test_the_judge_is_not_asked_about_what_a_check_turned_down():
    ask = FakeJudge(Verdict(True, "judge", "the judge accepts: fine"))
    kept, escalation = review(
        judged_config(),
        claimed("gpt-4o-mini", "Respond in JSON: two colours"),
        outcome("gpt-4o-mini", "red"),
        ask,
    )
    assert ask.read == [] and escalation is not None and kept.cost_micros == 40


def test_a_judge_in_shadow_mode_is_recorded_and_the_answer_stands():
    ask = FakeJudge(Verdict(False, "judge", "the judge escalates: vague"))
    kept, escalation = review(
        judged_config(shadow=True), claimed("gpt-4o-mini", "Hi"), outcome("gpt-4o-mini", "Hi!"), ask
    )
    assert escalation is None and kept.cost_micros == 47
    assert kept.route_decision["checks"][0] == {
        "tier": 0, "model": "gpt-4o-mini", "accept": False, "check": "judge",
        "reason": "the judge escalates: vague", "shadow": True,
    }  # fmt: skip


def test_a_judge_must_be_a_chat_model_of_the_catalog():
    with pytest.raises(ConfigError, match=r"cascade\.judge.*not a chat model"):
        judged_config(judge_model="text-embedding-3-small")
    with pytest.raises(ConfigError, match=r"cascade\.judge"):
        judged_config(judge_model="no-such-model")
