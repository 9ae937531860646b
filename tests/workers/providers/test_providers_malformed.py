"""2xx bodies we cannot read raise MalformedResponse saying what is wrong."""

from __future__ import annotations

import copy

import httpx
import pytest
from conftest import ANTHROPIC_EXAMPLE, OPENAI_EXAMPLE, json_bytes

from broker.errors import MalformedResponse
from workers.providers import adapter_for

JSON = {"content-type": "application/json"}
EXAMPLES = {"openai": OPENAI_EXAMPLE, "anthropic": ANTHROPIC_EXAMPLE}


_DELETE = object()


def edited(obj: dict, path: str, value: object = _DELETE) -> dict:
    """A deep copy of ``obj`` with the dotted ``path`` ("choices.0.message") set or deleted."""
    out = copy.deepcopy(obj)
    *parents, last = path.split(".")
    node: object = out
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    key: int | str = int(last) if isinstance(node, list) else last
    if value is _DELETE:
        del node[key]  # type: ignore[union-attr, arg-type]
    else:
        node[key] = value  # type: ignore[index]
    return out


def without(obj: dict, path: str) -> dict:
    return edited(obj, path)


def replaced(obj: dict, path: str, value: object) -> dict:
    return edited(obj, path, value)


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
    (without(OPENAI_EXAMPLE, "choices"), "missing field 'choices'"),
    (replaced(OPENAI_EXAMPLE, "choices", []), "'choices' is an empty array"),
    (without(OPENAI_EXAMPLE, "choices.0.message"), "missing field 'choices.0.message'"),
    (without(OPENAI_EXAMPLE, "usage"), "missing field 'usage.prompt_tokens'"),
    (replaced(OPENAI_EXAMPLE, "usage.prompt_tokens", "12"),
     "field 'usage.prompt_tokens' is a string, expected an integer"),
    (replaced(OPENAI_EXAMPLE, "usage.completion_tokens", True),
     "field 'usage.completion_tokens' is a boolean, expected an integer"),
    (replaced(OPENAI_EXAMPLE, "usage.completion_tokens", -1), "is negative"),
    (replaced(OPENAI_EXAMPLE, "usage.prompt_tokens_details.cached_tokens", 99),
     "cached_tokens (99) exceeds prompt_tokens (12)"),
    (replaced(OPENAI_EXAMPLE, "choices.0.message.content", ["a"]),
     "field 'choices.0.message.content' is an array, expected a string"),
    (without(OPENAI_EXAMPLE, "choices.0.finish_reason"),
     "missing field 'choices.0.finish_reason'"),
    (replaced(OPENAI_EXAMPLE, "usage", "lots"), "field 'usage' is a string, expected an object"),
    (without(OPENAI_EXAMPLE, "model"), "missing field 'model'"),
]  # fmt: skip

ANTHROPIC = [
    (without(ANTHROPIC_EXAMPLE, "content"), "missing field 'content'"),
    (replaced(ANTHROPIC_EXAMPLE, "content", "hi"),
     "field 'content' is a string, expected an array"),
    (replaced(ANTHROPIC_EXAMPLE, "content.0", "hi"), "field 'content.0' is not an object"),
    (without(ANTHROPIC_EXAMPLE, "content.0.text"), "missing field 'content.0.text'"),
    (without(ANTHROPIC_EXAMPLE, "usage"), "missing field 'usage.input_tokens'"),
    (without(ANTHROPIC_EXAMPLE, "usage.output_tokens"), "missing field 'usage.output_tokens'"),
    (replaced(ANTHROPIC_EXAMPLE, "usage.cache_read_input_tokens", 1.5),
     "field 'usage.cache_read_input_tokens' is a number, expected an integer"),
    (without(ANTHROPIC_EXAMPLE, "stop_reason"), "missing field 'stop_reason'"),
    ({"type": "error", "error": {"type": "api_error", "message": "boom"}},
     "an error object in a success response: boom"),
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


@pytest.mark.parametrize(("data", "text"), OPENAI)
def test_openai_missing_or_ill_typed_fields(data: dict, text: str) -> None:
    _assert_malformed("openai", JSON, json_bytes(data), text)


@pytest.mark.parametrize(("data", "text"), ANTHROPIC)
def test_anthropic_missing_or_ill_typed_fields(data: dict, text: str) -> None:
    _assert_malformed("anthropic", JSON, json_bytes(data), text)


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_json_with_no_content_type_is_accepted(wire: str) -> None:
    completion = adapter_for(wire).parse(200, httpx.Headers(), json_bytes(EXAMPLES[wire]))
    assert completion.text == "Hello there."
