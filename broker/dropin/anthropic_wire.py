"""Anthropic Messages ⇄ the broker's request and result.

:func:`message_request` reads a ``POST /v1/messages`` body (or a message batch request's
``params``) into a :class:`RequestIn`: the top-level ``system`` becomes the first message;
``temperature``, ``top_p`` and ``top_k`` carry over, ``stop_sequences`` becomes ``stop`` and
``output_config.format`` (structured outputs) a ``json_schema`` response format; tools,
thinking and MCP servers are refused. :func:`message` writes a finished request as the
``message`` object the SDK validates.

``stop_sequence``, the sequence that ended an answer, is recorded when the provider said which
(an Anthropic-format provider does; an OpenAI-format one does not): otherwise, when the request
gave exactly one, that is the one; with several it is null (which the SDK accepts), never a
guess.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.dropin.openai_wire import broker_facts, parse_request
from broker.dropin.wire import anthropic_stop, refuse_unsupported, text_of
from broker.errors import InvalidRequest
from broker.schemas.http import RequestIn
from broker.store import Request

UNSUPPORTED = ("tools", "tool_choice", "thinking", "mcp_servers")
#: Carried over to the :class:`RequestIn` as they are, when given.
PASSED = ("temperature", "top_p", "top_k")
#: What ``output_config.format`` is called as a ``json_schema`` response format (OpenAI's needs
#: a name; Anthropic's has none).
FORMAT_NAME = "output"


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
    for name in PASSED:
        if body.get(name) is not None:
            fields[name] = body[name]
    if body.get("stop_sequences") is not None:
        fields["stop"] = body["stop_sequences"]
    if (form := output_format(body.get("output_config"), where)) is not None:
        fields["response_format"] = form
    try:
        return parse_request(fields, where)
    except InvalidRequest as exc:  # name the field as the caller wrote it
        if exc.field and exc.field.startswith(f"{where}stop"):
            field = f"{where}stop_sequences" + exc.field.removeprefix(f"{where}stop")
            raise InvalidRequest(exc.message.replace(exc.field, field, 1), field=field) from exc
        raise


def output_format(config: Any, where: str) -> dict[str, Any] | None:
    """``output_config.format`` (``{"type": "json_schema", "schema": {...}}``) as the broker's
    ``json_schema`` response format, or None when there is none. Other ``output_config`` keys
    (``effort``) are left alone, as before."""
    if config is None:
        return None
    at = f"{where}output_config"
    if not isinstance(config, Mapping):
        raise InvalidRequest(f"{at}: must be an object", field=at)
    form = config.get("format")
    if form is None:
        return None
    if not isinstance(form, Mapping) or form.get("type") != "json_schema":
        raise InvalidRequest(
            f'{at}.format: {{"type": "json_schema", "schema": {{...}}}} is the format supported',
            field=f"{at}.format",
        )
    if not isinstance(form.get("schema"), Mapping):
        raise InvalidRequest(
            f"{at}.format.schema: a JSON Schema object is required", field=f"{at}.format.schema"
        )
    schema = {"name": FORMAT_NAME, "schema": dict(form["schema"])}
    return {"type": "json_schema", "json_schema": schema}


def message_id(row: Request) -> str:
    return message_id_of(row.id)


def message_id_of(request_id: str) -> str:
    return "msg_" + request_id.removeprefix("req_")


def usage_of(row: Request) -> dict[str, Any]:
    return usage(row.input_tokens or 0, row.cached_input_tokens or 0, row.output_tokens or 0)


def usage(input_tokens: int, cached_input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """A message's ``usage`` (cache writes are billed as input, so none are reported apart)."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached_input_tokens,
    }


def stop_sequence_of(row: Request) -> str | None:
    """The stop sequence that ended the answer, as far as the record tells (module doc)."""
    if anthropic_stop(row.finish_reason) != "stop_sequence":
        return None
    if row.stop_sequence:
        return row.stop_sequence
    stops = (row.payload or {}).get("stop") or []
    return stops[0] if len(stops) == 1 else None


def message(row: Request) -> dict[str, Any]:
    """A succeeded request as a Messages ``message`` object."""
    return {
        "id": message_id(row),
        "type": "message",
        "role": "assistant",
        "model": row.model_used or row.model,
        "content": [{"type": "text", "text": row.output or ""}],
        "stop_reason": anthropic_stop(row.finish_reason),
        "stop_sequence": stop_sequence_of(row),
        "usage": usage_of(row),
        "x_broker": broker_facts(row),
    }
