"""OpenAI-compatible adapter: request mapping and response parsing."""

from __future__ import annotations

import json

import httpx

from workers.providers import Completion, adapter_for, completion_cost

adapter = adapter_for("openai")


def headers(**extra: str) -> httpx.Headers:
    return httpx.Headers({"content-type": "application/json", **extra})


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_build_maps_request(mini, payload) -> None:
    call = adapter.build(mini, payload, "sk-test")
    assert call.path == "/v1/chat/completions"
    assert call.headers["authorization"] == "Bearer sk-test"
    assert call.json == {
        "model": "gpt-4o-mini-2024-07-18",  # provider_model_id, not the catalog name
        "messages": payload["messages"],
        "max_tokens": 64,
        "temperature": 0.2,
    }


def test_build_without_key_sends_no_authorization(mini, payload) -> None:
    call = adapter.build(mini, payload, None)
    assert "authorization" not in {k.lower() for k in call.headers}


def test_build_keeps_openai_temperature_range(mini, payload) -> None:
    assert adapter.build(mini, {**payload, "temperature": 1.7}, None).json["temperature"] == 1.7


def test_parse_documented_example(openai_example_text: str) -> None:
    body = openai_example_text.encode()
    completion = adapter.parse(200, headers(**{"x-request-id": "req_123"}), body)
    assert completion == Completion(
        text="Hello there.",
        finish_reason="stop",
        input_tokens=12,
        cached_input_tokens=0,
        output_tokens=30,
        provider_request_id="req_123",
        model="gpt-4o-mini",
    )


def test_parse_falls_back_to_body_id_without_request_id_header(openai_example: dict) -> None:
    completion = adapter.parse(200, headers(), dumps(openai_example))
    assert completion.provider_request_id == "chatcmpl-abc123"


def test_parse_cached_tokens_are_part_of_prompt_tokens(mini, openai_example: dict) -> None:
    body = openai_example
    body["usage"].update(prompt_tokens=2_000_000, completion_tokens=1_000_000)
    body["usage"]["prompt_tokens_details"]["cached_tokens"] = 1_000_000
    completion = adapter.parse(200, headers(), dumps(body))
    assert (completion.input_tokens, completion.cached_input_tokens) == (1_000_000, 1_000_000)
    assert completion.output_tokens == 1_000_000
    assert completion_cost(completion, mini) == 150_000 + 75_000 + 600_000


def test_parse_without_prompt_tokens_details(openai_example: dict) -> None:
    body = openai_example
    body["usage"] = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
    completion = adapter.parse(200, headers(), dumps(body))
    assert (completion.input_tokens, completion.cached_input_tokens) == (5, 0)


def test_parse_refusal_has_empty_text_and_given_finish_reason(openai_example: dict) -> None:
    body = openai_example
    body["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    body["choices"][0]["finish_reason"] = "content_filter"
    completion = adapter.parse(200, headers(), dumps(body))
    assert (completion.text, completion.finish_reason) == ("", "content_filter")


def test_parse_length_finish_reason(openai_example: dict) -> None:
    body = openai_example
    body["choices"][0]["finish_reason"] = "length"
    assert adapter.parse(200, headers(), dumps(body)).finish_reason == "length"
