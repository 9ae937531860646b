"""Anthropic Messages ⇄ the broker's request and result.

:func:`message_request` reads a ``POST /v1/messages`` body (or a message batch request's
``params``) into a :class:`RequestIn`: the top-level ``system`` becomes the first message;
:func:`message` writes a finished request as the ``message`` object the SDK validates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.dropin.openai_wire import broker_facts, parse_request
from broker.dropin.wire import anthropic_stop, refuse_unsupported, text_of
from broker.errors import InvalidRequest
from broker.schemas.http import RequestIn
from broker.store import Request

UNSUPPORTED = ("tools", "tool_choice", "stop_sequences", "top_p", "top_k", "thinking", "mcp_servers")


def message_request(body: Any, custom_id: str, where: str = "") -> RequestIn:
    """The broker request for a Messages body; 400 naming the field when it is wrong or asks
    for what the broker cannot honour."""
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"{where or 'body'}: must be a JSON object", field=where or "body")
    refuse_unsupported(body, UNSUPPORTED, where)
    if body.get("max_tokens") is None:
        raise InvalidRequest(f"{where}max_tokens: required", field=f"{where}max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            f"{where}messages: a non-empty list of messages is required", field=f"{where}messages"
        )
    converted = []
    if body.get("system"):
        converted.append({"role": "system", "content": text_of(body["system"], f"{where}system")})
    for i, turn in enumerate(messages):
        at = f"{where}messages[{i}]"
        role = turn.get("role") if isinstance(turn, Mapping) else None
        if role not in ("user", "assistant"):
            raise InvalidRequest(f"{at}.role: user or assistant", field=f"{at}.role")
        converted.append({"role": role, "content": text_of(turn.get("content"), f"{at}.content")})
    fields: dict[str, Any] = {
        "custom_id": custom_id,
        "model": body.get("model"),
        "messages": converted,
        "max_tokens": body["max_tokens"],
        "metadata": dict(body["metadata"]) if isinstance(body.get("metadata"), Mapping) else None,
    }
    if body.get("temperature") is not None:
        fields["temperature"] = body["temperature"]
    return parse_request(fields, where)


def message_id(row: Request) -> str:
    return "msg_" + row.id.removeprefix("req_")


def usage_of(row: Request) -> dict[str, Any]:
    return {
        "input_tokens": row.input_tokens or 0,
        "output_tokens": row.output_tokens or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": row.cached_input_tokens or 0,
    }


def message(row: Request) -> dict[str, Any]:
    """A succeeded request as a Messages ``message`` object."""
    return {
        "id": message_id(row),
        "type": "message",
        "role": "assistant",
        "model": row.model_used or row.model,
        "content": [{"type": "text", "text": row.output or ""}],
        "stop_reason": anthropic_stop(row.finish_reason),
        "stop_sequence": None,
        "usage": usage_of(row),
        "x_broker": broker_facts(row),
    }
