"""The cascade's LLM judge: what it is asked, how its verdict is read, and what a judge that
cannot answer leaves standing."""

from __future__ import annotations

import json

import pytest

from broker.config.routes import JUDGE_FRAMING_BYTES
from broker.errors import ProviderRetryable
from workers.attempts import AttemptResult
from workers.judge import payload, verdict_of
from workers.providers import Completion

ASKED = {"messages": [{"role": "user", "content": "What is 2+2?"}], "max_tokens": 64}


def said(text: str) -> AttemptResult:
    completion = Completion(text, "stop", 90, 0, 12, "id", "gpt-4.1-nano")
    return AttemptResult(completion, None, (), True)


def test_the_judge_reads_the_request_and_the_answer_under_a_schema():
    sent = payload(ASKED, "4", max_tokens=200)
    system, user = sent["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    assert "[user]\nWhat is 2+2?" in user["content"] and "<answer>\n4\n</answer>" in user["content"]
    assert sent["temperature"] == 0.0 and sent["max_tokens"] == 200
    schema = sent["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["verdict"]["enum"] == ["accept", "escalate"]


def test_the_framing_fits_what_the_reservation_allows_for_it():
    empty = payload({"messages": [{"role": "user", "content": ""}]}, "", max_tokens=200)
    assert len(json.dumps(empty["messages"]).encode()) < JUDGE_FRAMING_BYTES


@pytest.mark.parametrize(
    ("text", "accept", "words"),
    [
        ('{"verdict": "accept", "reason": "correct"}', True, "the judge accepts: correct"),
        ('{"verdict": "escalate", "reason": "2+2 is 4"}', False, "the judge escalates: 2+2 is 4"),
        ("accept", True, "did not parse: kept"),
        ('{"verdict": "maybe", "reason": ""}', True, "neither: kept"),
        ('{"reason": "no verdict"}', True, "did not parse: kept"),
    ],
)
def test_verdicts(text, accept, words):
    verdict = verdict_of(said(text))
    assert (verdict.accept, verdict.check) == (accept, "judge") and words in verdict.reason


def test_a_judge_that_cannot_be_asked_leaves_the_answer_standing():
    failed = AttemptResult(None, ProviderRetryable("503", provider="sim-openai"), (), False)
    verdict = verdict_of(failed)
    assert verdict.accept and "could not be asked" in verdict.reason
