"""Anthropic Messages bodies → the broker's request, and finished requests → ``message``
objects (and their stream) with the stop reason and stop sequence the SDK expects."""

from __future__ import annotations

import json

import pytest
from anthropic.types import Message

from broker.dropin import streams
from broker.dropin.anthropic_wire import UNSUPPORTED, message, message_request
from broker.errors import InvalidRequest
from broker.store import Request
from broker.submission import payload_of

ASK = [{"role": "user", "content": "Name a river."}]
SCHEMA = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}


def body(**fields) -> dict:
    return {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": ASK, **fields}


def test_top_p_top_k_and_stop_sequences_carry_over():
    request = message_request(body(top_p=0.8, top_k=40, stop_sequences=["###", "END"]), "c")
    payload = payload_of(request)
    assert (payload["top_p"], payload["top_k"], payload["stop"]) == (0.8, 40, ["###", "END"])
    assert "seed" not in payload and "response_format" not in payload


def test_output_config_format_becomes_a_json_schema_response_format():
    config = {"format": {"type": "json_schema", "schema": SCHEMA}, "effort": "low"}
    request = message_request(body(output_config=config), "c")
    assert payload_of(request)["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA},
    }
    # effort alone: left alone, as before
    assert message_request(body(output_config={"effort": "low"}), "c").response_format is None


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"top_k": 0}, "p.top_k", "greater than or equal to 1"),
        ({"top_p": 1.5}, "p.top_p", "less than or equal to 1"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "p.stop_sequences", "at most 4"),
        ({"stop_sequences": ["ok", ""]}, "p.stop_sequences[1]", "at least 1 character"),
        ({"output_config": "json"}, "p.output_config", "must be an object"),
        (
            {"output_config": {"format": {"type": "json_object"}}},
            "p.output_config.format",
            '{"type": "json_schema", "schema": {...}} is the format supported',
        ),
        (
            {"output_config": {"format": {"type": "json_schema"}}},
            "p.output_config.format.schema",
            "a JSON Schema object is required",
        ),
    ],
)
def test_bad_values_are_400s_naming_the_field_as_the_caller_wrote_it(fields, field, words):
    with pytest.raises(InvalidRequest) as info:
        message_request(body(**fields), "c", where="p.")
    assert info.value.field == field
    assert info.value.message.startswith(f"{field}: ")
    assert words in info.value.message


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("tools", [{"name": "f", "input_schema": {"type": "object"}}]),
        ("tool_choice", {"type": "auto"}),
        ("thinking", {"type": "enabled", "budget_tokens": 1024}),
        ("mcp_servers", [{"type": "url", "url": "https://x", "name": "x"}]),
    ],
)
def test_what_cannot_be_passed_on_is_still_refused(name, value):
    with pytest.raises(InvalidRequest) as info:
        message_request(body(**{name: value}), "c")
    assert info.value.field == name
    assert "not supported by the broker" in info.value.message


def test_the_mapped_parameters_are_no_longer_on_the_refused_list():
    assert not {"top_p", "top_k", "stop_sequences"} & set(UNSUPPORTED)


def row(finish_reason: str, stop: list[str] | None = None) -> Request:
    payload = {"messages": ASK, "max_tokens": 64, "temperature": 1.0}
    if stop is not None:
        payload["stop"] = stop
    return Request(
        id="req_ab_0",
        custom_id="c",
        status="succeeded",
        model="claude-haiku-4-5",
        model_used="claude-haiku-4-5",
        payload=payload,
        output="The Nile",
        finish_reason=finish_reason,
        input_tokens=5,
        cached_input_tokens=0,
        output_tokens=2,
        attempts=1,
    )


@pytest.mark.parametrize(
    ("finish_reason", "stop", "stop_reason", "stop_sequence"),
    [
        ("stop_sequence", ["###"], "stop_sequence", "###"),  # the one sequence asked for
        ("stop_sequence", ["###", "END"], "stop_sequence", None),  # which one: not recorded
        ("end_turn", ["###"], "end_turn", None),
        ("stop", ["###"], "end_turn", None),  # OpenAI does not tell a stop sequence apart
        ("length", None, "max_tokens", None),
    ],
)
def test_the_message_says_why_it_stopped(finish_reason, stop, stop_reason, stop_sequence):
    answer = message(row(finish_reason, stop))
    assert (answer["stop_reason"], answer["stop_sequence"]) == (stop_reason, stop_sequence)
    Message.model_validate(answer)  # the SDK's own model, strictly


def test_the_stream_ends_with_the_same_stop_reason_and_sequence():
    events = [
        json.loads(line.removeprefix(b"data: "))
        for chunk in streams.replay(streams.anthropic_of, row("stop_sequence", ["###"]))
        for line in chunk.split(b"\n")
        if line.startswith(b"data: ")
    ]
    start = next(e for e in events if e["type"] == "message_start")["message"]
    assert (start["stop_reason"], start["stop_sequence"]) == (None, None)
    delta = next(e for e in events if e["type"] == "message_delta")["delta"]
    assert delta == {"stop_reason": "stop_sequence", "stop_sequence": "###"}
