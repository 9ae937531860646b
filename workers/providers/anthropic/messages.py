"""Request mapping and response parsing for the Anthropic Messages API."""

from __future__ import annotations

from typing import Any

import httpx

from broker.config.broker_toml import ModelConfig
from broker.errors import MalformedResponse, ProviderRejected
from workers.providers.anthropic import api
from workers.providers.base import (
    BodyError,
    Completion,
    HttpCall,
    decode_json_object,
    field,
    request_id,
    token_count,
)

#: Anthropic accepts temperature in [0, 1]; OpenAI-style requests may ask for up to 2.
MAX_TEMPERATURE = 1.0


def build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    """Map the broker's OpenAI-shaped request onto Messages.

    - ``system`` is not a message role here: every system message moves to the top-level
      ``system`` string, joined with blank lines, in order; other messages pass as-is
      (consecutive same-role messages are accepted by the API).
    - ``temperature`` is clamped to [0, 1.0], Anthropic's range, so a request written for
      OpenAI's 0–2 scale is served at the hottest setting instead of being rejected with a 400.
    """
    if payload.get("kind") == "embedding":  # broker.toml refuses such a catalog; be sure
        raise ProviderRejected(
            "the anthropic wire format has no embeddings endpoint; put embedding models on a "
            "provider speaking the openai wire format",
            provider="anthropic",
        )
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
        body["temperature"] = min(max(float(payload["temperature"]), 0.0), MAX_TEMPERATURE)
    return HttpCall(path=api.PATH, headers=api.headers(api_key), json=body)


def parse(status: int, headers: httpx.Headers, body: bytes) -> Completion:
    """A ``message`` object as a :class:`Completion`.

    Text is the concatenation of the ``text`` blocks (other block types carry no answer text).
    Usage: ``input_tokens`` is already uncached; ``cache_read_input_tokens`` is billed at the
    cached price; ``cache_creation_input_tokens`` is billed at the plain input price (Anthropic
    charges cache writes a premium we do not model), so it is added to ``input_tokens``.
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
        uncached = token_count(data, "usage.input_tokens")
        created = token_count(data, "usage.cache_creation_input_tokens", optional=True)
        return Completion(
            text="".join(parts),
            finish_reason=field(data, "stop_reason", str),
            input_tokens=uncached + created,
            cached_input_tokens=token_count(data, "usage.cache_read_input_tokens", optional=True),
            output_tokens=token_count(data, "usage.output_tokens"),
            provider_request_id=rid,
            model=field(data, "model", str),
        )
    except BodyError as exc:
        raise MalformedResponse(
            f"HTTP {status}: {exc}", provider="anthropic", status=status, provider_request_id=rid
        ) from exc
