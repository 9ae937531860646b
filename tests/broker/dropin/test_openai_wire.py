"""OpenAI Chat Completions bodies → the broker's request: what carries over, what is refused."""

from __future__ import annotations

import pytest

from broker.dropin.openai_wire import UNSUPPORTED, chat_request
from broker.errors import InvalidRequest
from broker.submission import payload_of

ASK = [{"role": "user", "content": "Name a river."}]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "river",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "strict": True,
    },
}


def body(**fields) -> dict:
    return {"model": "gpt-4o-mini", "messages": ASK, **fields}


def test_sampling_and_format_parameters_carry_over_to_the_payload():
    request = chat_request(
        body(top_p=0.9, stop="END", seed=42, response_format=SCHEMA, temperature=0.3),
        "c",
    )
    payload = payload_of(request)
    assert payload["top_p"] == 0.9 and payload["temperature"] == 0.3
    assert payload["stop"] == ["END"]
    assert payload["seed"] == 42
    assert payload["response_format"] == SCHEMA
    assert "top_k" not in payload


def test_top_k_carries_over_for_the_models_that_take_it():
    # no OpenAI parameter; passed (in extra_body) for OpenAI-compatible servers and Claude models
    assert payload_of(chat_request(body(model="claude-haiku-4-5", top_k=5), "c"))["top_k"] == 5


def test_a_list_of_stop_sequences_and_json_object_carry_over():
    request = chat_request(
        body(stop=["\n\n", "END"], response_format={"type": "json_object"}), "c"
    )
    assert request.stop == ["\n\n", "END"]
    assert payload_of(request)["response_format"] == {"type": "json_object"}


def test_absent_or_null_parameters_leave_the_payload_as_it_was():
    plain = payload_of(chat_request(body(), "c"))
    nulls = payload_of(chat_request(body(top_p=None, stop=None, seed=None), "c"))
    assert plain == nulls == {"messages": ASK, "max_tokens": 1024, "temperature": 1.0}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"stop": ["a", "b", "c", "d", "e"]}, "body.stop", "at most 4 items"),
        ({"stop": [""]}, "body.stop[0]", "at least 1 character"),
        ({"top_p": 2}, "body.top_p", "less than or equal to 1"),
        ({"seed": 0.5}, "body.seed", "valid integer"),
        ({"response_format": {"type": "yaml"}}, "body.response_format.type", "'json_object'"),
        (
            {"response_format": {"type": "json_schema"}},
            "body.response_format",
            "type json_schema needs json_schema",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "body.response_format.json_schema.name",
            "Field required",
        ),
    ],
)
def test_bad_values_are_400s_naming_the_field(fields, field, words):
    with pytest.raises(InvalidRequest) as info:
        chat_request(body(**fields), "c", where="body.")
    assert info.value.field == field
    assert info.value.message.startswith(f"{field}: ")
    assert words in info.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tools", [{"type": "function", "function": {"name": "f"}}]),
        ("tool_choice", "auto"),
        ("functions", [{"name": "f"}]),
        ("logprobs", True),
        ("logit_bias", {"50256": -100}),
        ("presence_penalty", 0.5),
        ("frequency_penalty", 0.5),
    ],
)
def test_what_cannot_be_passed_on_is_still_refused(name, value):
    with pytest.raises(InvalidRequest) as info:
        chat_request(body(**{name: value}), "c")
    assert info.value.field == name
    assert "not supported by the broker" in info.value.message


def test_the_mapped_parameters_are_no_longer_on_the_refused_list():
    assert not {"top_p", "stop", "seed", "response_format"} & set(UNSUPPORTED)
