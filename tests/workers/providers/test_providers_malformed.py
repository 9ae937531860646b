"""2xx bodies we cannot read raise MalformedResponse saying what is wrong."""

from __future__ import annotations

import json

import httpx
import pytest

from broker.errors import MalformedResponse
from workers.providers import adapter_for

JSON = {"content-type": "application/json"}


DELETE = object()


def edit(obj: dict, path: str, value: object = DELETE) -> dict:
    """Set or delete the dotted ``path`` ("choices.0.message") in ``obj``, in place."""
    *parents, last = path.split(".")
    node: object = obj
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    key: int | str = int(last) if isinstance(node, list) else last
    if value is DELETE:
        del node[key]  # type: ignore[union-attr, arg-type]
    else:
        node[key] = value  # type: ignore[index]
    return obj


COMMON = [
    (JSON, b'{"id": "x", "choices": [', "truncated JSON body"),
    (JSON, b'{"id": "x", "model": "gpt-4o-mi', "truncated JSON body"),
    (JSON, b"{'id': 'x'}", "invalid JSON body"),
    (JSON, b"not json at all", "invalid JSON body"),
    (JSON, b"", "empty body"),
    (JSON, b"[1, 2]", "JSON body is an array, expected an object"),
    ({"content-type": "text/html; charset=utf-8"}, b"<html>Welcome to nginx</html>",
     "expected a JSON body, got content type 'text/html; charset=utf-8'"),
]  # fmt: skip

OPENAI = [
    (("choices", DELETE), "missing field 'choices'"),
    (("choices", []), "'choices' is an empty array"),
    (("choices.0.message", DELETE), "missing field 'choices.0.message'"),
    (("usage", DELETE), "missing field 'usage.prompt_tokens'"),
    (("usage.prompt_tokens", "12"),
     "field 'usage.prompt_tokens' is a string, expected an integer"),
    (("usage.completion_tokens", True),
     "field 'usage.completion_tokens' is a boolean, expected an integer"),
    (("usage.completion_tokens", -1), "is negative"),
    (("usage.prompt_tokens_details.cached_tokens", 99),
     "cached_tokens (99) exceeds prompt_tokens (12)"),
    (("choices.0.message.content", ["a"]),
     "field 'choices.0.message.content' is an array, expected a string"),
    (("choices.0.finish_reason", DELETE),
     "missing field 'choices.0.finish_reason'"),
    (("usage", "lots"), "field 'usage' is a string, expected an object"),
    (("model", DELETE), "missing field 'model'"),
]  # fmt: skip

ANTHROPIC = [
    (("content", DELETE), "missing field 'content'"),
    (("content", "hi"),
     "field 'content' is a string, expected an array"),
    (("content.0", "hi"), "field 'content.0' is not an object"),
    (("content.0.text", DELETE), "missing field 'content.0.text'"),
    (("usage", DELETE), "missing field 'usage.input_tokens'"),
    (("usage.output_tokens", DELETE), "missing field 'usage.output_tokens'"),
    (("usage.cache_read_input_tokens", 1.5),
     "field 'usage.cache_read_input_tokens' is a number, expected an integer"),
    (("stop_reason", DELETE), "missing field 'stop_reason'"),
    (("type", "error"), "an error object in a success response: no message"),
]  # fmt: skip


def _assert_malformed(wire: str, headers: dict, body: bytes, text: str) -> None:
    hdrs = httpx.Headers({**headers, "x-request-id": "req_1", "request-id": "req_1"})
    with pytest.raises(MalformedResponse) as info:
        adapter_for(wire).parse(200, hdrs, body)
    assert text in info.value.message, info.value.message
    assert info.value.status == 200
    assert info.value.provider_request_id == "req_1"


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize(("headers", "body", "text"), COMMON)
def test_unreadable_bodies(wire: str, headers: dict, body: bytes, text: str) -> None:
    _assert_malformed(wire, headers, body, text)


@pytest.mark.parametrize(("change", "text"), OPENAI)
def test_openai_missing_or_ill_typed_fields(
    openai_example: dict, change: tuple[str, object], text: str
) -> None:
    body = json.dumps(edit(openai_example, *change)).encode()
    _assert_malformed("openai", JSON, body, text)


@pytest.mark.parametrize(("change", "text"), ANTHROPIC)
def test_anthropic_missing_or_ill_typed_fields(
    anthropic_example: dict, change: tuple[str, object], text: str
) -> None:
    body = json.dumps(edit(anthropic_example, *change)).encode()
    _assert_malformed("anthropic", JSON, body, text)


def test_anthropic_error_object_in_a_2xx() -> None:
    error = {"type": "error", "error": {"type": "api_error", "message": "boom"}}
    body = json.dumps(error).encode()
    _assert_malformed("anthropic", JSON, body, "an error object in a success response: boom")


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_json_with_no_content_type_is_accepted(
    wire: str, openai_example: dict, anthropic_example: dict
) -> None:
    example = openai_example if wire == "openai" else anthropic_example
    completion = adapter_for(wire).parse(200, httpx.Headers(), json.dumps(example).encode())
    assert completion.text == "Hello there."
