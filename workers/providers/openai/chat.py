"""Request mapping and response parsing for OpenAI-compatible Chat Completions.

The stored parameters pass one to one: ``top_p``, ``stop`` (a list of up to 4), ``seed`` (which
OpenAI honours on a best-effort basis) and ``response_format`` (``json_object``, or
``json_schema`` with its name, schema and ``strict``). ``top_k`` has no equivalent in this wire
format: a request carrying it is refused (:func:`unsupported`), never sent without it, since
sampling from the whole vocabulary is not what was asked for.
"""

from __future__ import annotations

from typing import Any

import httpx

from broker.config.broker_toml import ModelConfig
from broker.errors import MalformedResponse
from workers.providers.base import (
    BodyError,
    Completion,
    HttpCall,
    Unsupported,
    as_stream,
    decode_json_object,
    field,
    request_id,
    token_count,
)
from workers.providers.openai import api

#: Stored parameters sent as they are, when the request has them.
PASSED = ("temperature", "top_p", "stop", "seed", "response_format")


def unsupported(payload: dict) -> Unsupported | None:
    """``top_k``: Chat Completions has no such parameter. Some OpenAI-compatible servers take
    it as an extra (vLLM), OpenAI refuses it and others ignore it; the wire format cannot tell
    which one it speaks to, so it refuses it for all rather than risk it being ignored."""
    if payload.get("top_k") is not None:
        return Unsupported(
            "top_k",
            "the OpenAI Chat Completions API has no top_k; leave it out (top_p is the nearest "
            "control) or ask for a model of an Anthropic-format provider",
        )
    return None


def build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    """The stored request maps one to one; ``model`` becomes the provider's own model id."""
    if (refused := unsupported(payload)) is not None:
        raise refused.rejected("openai")
    body: dict[str, Any] = {
        "model": model.provider_model_id,
        "messages": [{"role": m["role"], "content": m["content"]} for m in payload["messages"]],
        "max_tokens": payload["max_tokens"],
    }
    for name in PASSED:
        if payload.get(name) is not None:
            body[name] = payload[name]
    return HttpCall(path=api.PATH, headers=api.headers(api_key), json=body)


def stream_build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    """:func:`build`'s call as a stream that ends with a usage chunk (without
    ``include_usage`` a stream reports no usage at all, and the call could not be costed)."""
    call = build(model, payload, api_key)
    return as_stream(call, stream=True, stream_options={"include_usage": True})


def parse(status: int, headers: httpx.Headers, body: bytes) -> Completion:
    """A ``chat.completion`` object as a :class:`Completion`.

    Usage is split by :func:`usage`. A null ``content`` (a refusal, or tool calls) is an empty
    text with the provider's ``finish_reason``; missing ``choices`` is malformed, not empty.
    """
    rid = request_id(headers, *api.REQUEST_ID_HEADERS)
    try:
        data = decode_json_object(headers, body)
        rid = rid or field(data, "id", str, optional=True)
        if not field(data, "choices", list):
            raise BodyError("field 'choices' is an empty array")
        field(data, "choices.0.message", dict)
        # Null content is a refusal or tool calls: no text, and finish_reason says why.
        text = field(data, "choices.0.message.content", str, optional=True) or ""
        finish_reason = field(data, "choices.0.finish_reason", str)
        uncached, cached, output = usage(data)
        return Completion(
            text=text,
            finish_reason=finish_reason,
            input_tokens=uncached,
            cached_input_tokens=cached,
            output_tokens=output,
            provider_request_id=rid,
            model=field(data, "model", str),
        )
    except BodyError as exc:
        raise MalformedResponse(
            f"HTTP {status}: {exc}", provider="openai", status=status, provider_request_id=rid
        ) from exc


def usage(data: dict[str, Any]) -> tuple[int, int, int]:
    """Uncached input, cached input and output tokens of a response's (or a stream's last
    chunk's) ``usage``: ``prompt_tokens`` *includes* ``prompt_tokens_details.cached_tokens``,
    so the uncached count is the difference."""
    prompt = token_count(data, "usage.prompt_tokens")
    cached = token_count(data, "usage.prompt_tokens_details.cached_tokens", optional=True)
    if cached > prompt:
        raise BodyError(f"cached_tokens ({cached}) exceeds prompt_tokens ({prompt})")
    return prompt - cached, cached, token_count(data, "usage.completion_tokens")
