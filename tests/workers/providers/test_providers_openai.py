"""OpenAI-compatible adapter: request mapping and response parsing."""

from __future__ import annotations

import json

import httpx
import pytest

from broker.config.broker_toml import load_config
from broker.errors import ProviderRejected
from workers.fallback import Fail, after_error
from workers.providers import Completion, ProviderClient, adapter_for, completion_cost

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


def test_build_passes_sampling_and_format_parameters(mini, payload) -> None:
    form = {
        "type": "json_schema",
        "json_schema": {"name": "river", "schema": {"type": "object"}, "strict": True},
    }
    asked = {**payload, "top_p": 0.9, "stop": ["END", "##"], "seed": 7, "response_format": form}
    body = adapter.build(mini, asked, None).json
    assert body == {
        "model": "gpt-4o-mini-2024-07-18",
        "messages": payload["messages"],
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END", "##"],
        "seed": 7,
        "response_format": form,
    }
    json_object = {**payload, "response_format": {"type": "json_object"}}
    assert adapter.build(mini, json_object, None).json["response_format"] == {"type": "json_object"}


def test_top_k_is_refused_naming_it_never_dropped(mini, payload) -> None:
    asked = {**payload, "top_k": 40}
    refused = adapter.unsupported(asked)
    assert refused is not None and refused.param == "top_k"
    with pytest.raises(ProviderRejected, match="top_k: the OpenAI Chat Completions API has no"):
        adapter.build(mini, asked, None)
    assert adapter.unsupported(payload) is None


def test_a_refused_parameter_fails_the_request_without_a_call_or_a_retry(
    mini, payload, openai_provider
) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(500)

    client = ProviderClient(openai_provider, None, transport=httpx.MockTransport(handler))
    with pytest.raises(ProviderRejected) as info:
        client.complete(mini, {**payload, "top_k": 40})
    assert calls == [] and info.value.provider == "sim-openai"
    config = load_config()
    decision = after_error(config, "gpt-4o-mini", "gpt-4o-mini", info.value, 0)
    assert isinstance(decision, Fail) and decision.code == "provider_rejected"
    assert "top_k" in decision.message


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
