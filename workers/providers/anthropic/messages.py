"""Request mapping and response parsing for the Anthropic Messages API."""

from __future__ import annotations

from typing import Any

import httpx

from broker.config.broker_toml import ModelConfig
from broker.errors import MalformedResponse
from workers.providers.anthropic import api
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

#: Anthropic accepts temperature in [0, 1]; OpenAI-style requests may ask for up to 2.
MAX_TEMPERATURE = 1.0


def unsupported(payload: dict) -> Unsupported | None:
    """What Messages cannot honour: an embedding request (broker.toml refuses such a catalog;
    be sure), and ``response_format`` ``json_object`` (or ``json_schema`` without a schema):
    Messages constrains output only to a given schema, and "any JSON object" is not one."""
    if payload.get("kind") == "embedding":
        return Unsupported(
            "input",
            "the anthropic wire format has no embeddings endpoint; put embedding models on a "
            "provider speaking the openai wire format",
        )
    form = payload.get("response_format") or {}
    if form.get("type") == "json_object" or (
        form.get("type") == "json_schema" and not form["json_schema"].get("schema")
    ):
        what = "json_schema without a schema"
        if form["type"] == "json_object":
            what = "type json_object"
        return Unsupported(
            "response_format",
            f"{what} cannot be honoured by the Anthropic Messages API (it constrains output "
            "only to a given schema); give json_schema a schema (sent as output_config.format) "
            "or ask for a model of an OpenAI-format provider",
        )
    return None


def build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    """Map the broker's OpenAI-shaped request onto Messages.

    - ``system`` is not a message role here: every system message moves to the top-level
      ``system`` string, joined with blank lines, in order; other messages pass as-is
      (consecutive same-role messages are accepted by the API).
    - ``temperature`` is clamped to [0, 1.0], Anthropic's range, so a request written for
      OpenAI's 0–2 scale is served at the hottest setting instead of being rejected with a 400.
      With ``top_p`` given, a temperature of 1.0 (the API's default, and what a request that
      names no temperature stores) is left out: newer Claude models refuse both at once, and
      leaving out the default asks the same question. Both given on purpose are both sent.
    - ``top_p`` and ``top_k`` pass as they are; ``stop`` becomes ``stop_sequences``.
    - ``response_format`` ``json_schema`` becomes ``output_config.format`` (structured
      outputs: the answer is JSON following the schema; its name and ``strict`` have no
      counterpart, the schema is always enforced); ``text`` is the default and sends nothing;
      ``json_object`` is refused (:func:`unsupported`).
    - ``seed`` is dropped: Messages has no seed, and OpenAI's is only best-effort
      determinism, so the answer asked for is the same without it.
    """
    if (refused := unsupported(payload)) is not None:
        raise refused.rejected("anthropic")
    system = [m["content"] for m in payload["messages"] if m["role"] == "system"]
    body: dict[str, Any] = {
        "model": model.provider_model_id,
        "max_tokens": payload["max_tokens"],
        "messages": [
            {"role": m["role"], "content": m["content"]}
            for m in payload["messages"]
            if m["role"] != "system"
        ],
    }
    if system:
        body["system"] = "\n\n".join(system)
    if payload.get("temperature") is not None:
        temperature = min(max(float(payload["temperature"]), 0.0), MAX_TEMPERATURE)
        if payload.get("top_p") is None or temperature != MAX_TEMPERATURE:
            body["temperature"] = temperature
    for name in ("top_p", "top_k"):
        if payload.get(name) is not None:
            body[name] = payload[name]
    if payload.get("stop"):
        body["stop_sequences"] = list(payload["stop"])
    form = payload.get("response_format") or {}
    if form.get("type") == "json_schema":
        schema = form["json_schema"]["schema"]
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    return HttpCall(path=api.PATH, headers=api.headers(api_key), json=body)


def stream_build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    """:func:`build`'s call, answered as a stream of events."""
    return as_stream(build(model, payload, api_key), stream=True)


def parse(status: int, headers: httpx.Headers, body: bytes) -> Completion:
    """A ``message`` object as a :class:`Completion`.

    Text is the concatenation of the ``text`` blocks (other block types carry no answer text);
    usage is split by :func:`usage`.
    """
    rid = request_id(headers, *api.REQUEST_ID_HEADERS)
    try:
        data = decode_json_object(headers, body)
        rid = rid or field(data, "id", str, optional=True)
        if data.get("type") == "error":
            message = field(data, "error.message", str, optional=True) or "no message"
            raise BodyError(f"an error object in a success response: {message}")
        parts: list[str] = []
        for i, block in enumerate(field(data, "content", list)):
            if not isinstance(block, dict):
                raise BodyError(f"field 'content.{i}' is not an object")
            if block.get("type") == "text":
                parts.append(field(data, f"content.{i}.text", str))
        finish_reason = field(data, "stop_reason", str)
        uncached, cached, output = usage(data)
        return Completion(
            text="".join(parts),
            finish_reason=finish_reason,
            input_tokens=uncached,
            cached_input_tokens=cached,
            output_tokens=output,
            provider_request_id=rid,
            model=field(data, "model", str),
            stop_sequence=field(data, "stop_sequence", str, optional=True),
        )
    except BodyError as exc:
        raise MalformedResponse(
            f"HTTP {status}: {exc}", provider="anthropic", status=status, provider_request_id=rid
        ) from exc


def usage(data: dict[str, Any]) -> tuple[int, int, int]:
    """Input, cached input and output tokens of a message's ``usage``, split by price.

    ``input_tokens`` is already uncached; ``cache_read_input_tokens`` is billed at the cached
    price; ``cache_creation_input_tokens`` is billed at the plain input price (Anthropic charges
    cache writes a premium we do not model), so it is added to the input tokens.
    """
    uncached, cached = input_usage(data)
    return uncached, cached, token_count(data, "usage.output_tokens")


def input_usage(data: dict[str, Any]) -> tuple[int, int]:
    """Input and cached input tokens of a message's ``usage`` (see :func:`usage`)."""
    uncached = token_count(data, "usage.input_tokens")
    created = token_count(data, "usage.cache_creation_input_tokens", optional=True)
    cached = token_count(data, "usage.cache_read_input_tokens", optional=True)
    return uncached + created, cached
