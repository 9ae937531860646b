"""Anthropic adapter: request mapping and response parsing."""

from __future__ import annotations

import json

import httpx
import pytest

from broker.errors import ProviderRejected
from workers.providers import Completion, adapter_for, completion_cost

adapter = adapter_for("anthropic")


def headers(**extra: str) -> httpx.Headers:
    return httpx.Headers({"content-type": "application/json", **extra})


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_build_maps_request(haiku, payload) -> None:
    call = adapter.build(haiku, payload, "sk-ant-test")
    assert call.path == "/v1/messages"
    assert call.headers["x-api-key"] == "sk-ant-test"
    assert call.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in call.headers
    assert call.json == {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0.2,
    }


def test_build_without_key_sends_no_key_header(haiku, payload) -> None:
    call = adapter.build(haiku, payload, None)
    assert "x-api-key" not in call.headers
    assert call.headers["anthropic-version"] == "2023-06-01"


def test_build_joins_all_system_messages_and_keeps_turn_order(haiku) -> None:
    payload = {
        "messages": [
            {"role": "system", "content": "Rule one."},
            {"role": "user", "content": "a"},
            {"role": "user", "content": "b"},
            {"role": "system", "content": "Rule two."},
            {"role": "assistant", "content": "c"},
        ],
        "max_tokens": 10,
        "temperature": 0.0,
    }
    body = adapter.build(haiku, payload, None).json
    assert body["system"] == "Rule one.\n\nRule two."
    assert [m["role"] for m in body["messages"]] == ["user", "user", "assistant"]
    assert body["temperature"] == 0.0


def test_build_without_system_messages_omits_system(haiku) -> None:
    payload = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5, "temperature": 1}
    assert "system" not in adapter.build(haiku, payload, None).json


def test_build_clamps_temperature_to_one(haiku, payload) -> None:
    assert adapter.build(haiku, {**payload, "temperature": 1.7}, None).json["temperature"] == 1.0
    assert adapter.build(haiku, {**payload, "temperature": 1.0}, None).json["temperature"] == 1.0


def test_build_maps_sampling_parameters_and_stop_sequences(haiku, payload) -> None:
    asked = {**payload, "top_p": 0.9, "top_k": 40, "stop": ["END", "##"], "seed": 7}
    body = adapter.build(haiku, asked, None).json
    assert body == {
        "model": "claude-haiku-4-5-20251001",
        "max_tokens": 64,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "Say hello."}],
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END", "##"],
    }  # no seed: Messages has none


def test_build_leaves_out_the_default_temperature_beside_top_p(haiku, payload) -> None:
    # newer Claude models refuse temperature and top_p together; 1.0 is the default anyway
    for temperature in (1.0, 1.7):  # 1.7 clamps to 1.0
        body = adapter.build(haiku, {**payload, "temperature": temperature, "top_p": 0.5}, None)
        assert "temperature" not in body.json and body.json["top_p"] == 0.5
    both = adapter.build(haiku, {**payload, "temperature": 0.3, "top_p": 0.5}, None).json
    assert (both["temperature"], both["top_p"]) == (0.3, 0.5)  # both asked for: both sent
    assert adapter.build(haiku, {**payload, "temperature": 1.0}, None).json["temperature"] == 1.0


def test_build_sends_a_json_schema_as_output_config_format(haiku, payload) -> None:
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    form = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}}
    body = adapter.build(haiku, {**payload, "response_format": form}, None).json
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}
    assert "response_format" not in body


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ({"type": "json_object"}, "response_format: type json_object cannot be honoured"),
        (
            {"type": "json_schema", "json_schema": {"name": "x"}},
            "response_format: json_schema without a schema cannot be honoured",
        ),
    ],
)
def test_build_refuses_a_json_format_it_cannot_honour(haiku, payload, form, words) -> None:
    asked = {**payload, "response_format": form}
    assert adapter.unsupported(asked).param == "response_format"
    with pytest.raises(ProviderRejected, match=words):
        adapter.build(haiku, asked, None)
    assert adapter.unsupported(payload) is None


def test_parse_stop_sequence(anthropic_example: dict) -> None:
    body = anthropic_example
    body.update(stop_reason="stop_sequence", stop_sequence="##")
    completion = adapter.parse(200, headers(), dumps(body))
    assert (completion.finish_reason, completion.stop_sequence) == ("stop_sequence", "##")


def test_parse_documented_example(anthropic_example_text: str) -> None:
    body = anthropic_example_text.encode()
    completion = adapter.parse(200, headers(**{"request-id": "req_011"}), body)
    assert completion == Completion(
        text="Hello there.",
        finish_reason="end_turn",
        input_tokens=12,
        cached_input_tokens=0,
        output_tokens=30,
        provider_request_id="req_011",
        model="claude-haiku-4-5",
    )


def test_parse_falls_back_to_message_id(anthropic_example: dict) -> None:
    completion = adapter.parse(200, headers(), dumps(anthropic_example))
    assert completion.provider_request_id == "msg_01XFDUDYJgAACzvnptvVoYEL"


def test_parse_cache_fields(haiku, anthropic_example: dict) -> None:
    body = anthropic_example
    body["usage"] = {
        "input_tokens": 100,
        "output_tokens": 1_000,
        "cache_creation_input_tokens": 900,  # billed at the input price
        "cache_read_input_tokens": 5_000,  # billed at the cached price
    }
    completion = adapter.parse(200, headers(), dumps(body))
    assert completion.input_tokens == 1_000
    assert completion.cached_input_tokens == 5_000
    assert completion.output_tokens == 1_000
    # 1000 × 1.00 + 5000 × 0.10 + 1000 × 5.00 micro-dollars
    assert completion_cost(completion, haiku) == 1_000 + 500 + 5_000


def test_parse_null_cache_fields_count_as_zero(anthropic_example: dict) -> None:
    body = anthropic_example
    body["usage"].update(cache_creation_input_tokens=None)
    del body["usage"]["cache_read_input_tokens"]
    completion = adapter.parse(200, headers(), dumps(body))
    assert (completion.input_tokens, completion.cached_input_tokens) == (12, 0)


def test_parse_concatenates_text_blocks_only(anthropic_example: dict) -> None:
    body = anthropic_example
    body["content"] = [
        {"type": "thinking", "thinking": "hmm", "signature": "sig"},
        {"type": "text", "text": "Hello, "},
        {"type": "tool_use", "id": "toolu_1", "name": "f", "input": {}},
        {"type": "text", "text": "world."},
    ]
    body["stop_reason"] = "max_tokens"
    completion = adapter.parse(200, headers(), dumps(body))
    assert (completion.text, completion.finish_reason) == ("Hello, world.", "max_tokens")


def test_parse_empty_content_is_empty_text(anthropic_example: dict) -> None:
    body = {**anthropic_example, "content": [], "stop_reason": "refusal"}
    completion = adapter.parse(200, headers(), dumps(body))
    assert (completion.text, completion.finish_reason) == ("", "refusal")
