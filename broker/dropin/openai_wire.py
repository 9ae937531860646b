"""OpenAI Chat Completions ⇄ the broker's request and result.

:func:`chat_request` reads a ``POST /v1/chat/completions`` body (or a batch line's ``body``)
into a :class:`RequestIn`: messages, ``max_tokens`` (or ``max_completion_tokens``),
``temperature``, ``top_p``, ``stop``, ``seed``, ``response_format`` (and ``top_k``, see
:data:`PASSED`) carry over and are checked there (a 400 naming the field); tools, logprobs,
penalties and the rest of :data:`UNSUPPORTED` are refused. :func:`chat_completion` writes a
finished request as the ``chat.completion`` object the SDK validates (DROPIN_REFERENCE.md §5),
with the broker's own facts (request id, cost, cache, route) under ``x_broker``, an extra field
the SDK keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from broker.dropin.wire import DEFAULT_MAX_TOKENS, openai_finish, refuse_unsupported, text_of
from broker.errors import InvalidRequest, field_path
from broker.money import format_usd
from broker.schemas.http import RequestIn
from broker.store import Request

ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
UNSUPPORTED = (
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "presence_penalty",
    "frequency_penalty",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
)
IGNORED = ("user", "store", "parallel_tool_calls", "service_tier", "stream", "stream_options")
#: Carried over to the :class:`RequestIn` as they are, when given (``stop``: a string or a list).
#: ``top_k`` is no OpenAI parameter, but SDK code for OpenAI-compatible servers passes it (in
#: ``extra_body``): a model that takes it gets it, an OpenAI-format one refuses it by name.
PASSED = ("temperature", "top_p", "stop", "seed", "response_format", "top_k")


def chat_request(body: Any, custom_id: str, where: str = "") -> RequestIn:
    """The broker request for a chat completion body; 400 naming the field when it is wrong
    or asks for what the broker cannot honour. ``where`` prefixes field names (``body.``)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"{where or 'body'}: must be a JSON object", field=where or "body")
    refuse_unsupported(body, UNSUPPORTED, where)
    if body.get("n") not in (None, 1):
        raise InvalidRequest(f"{where}n: only n=1 is supported by the broker", field=f"{where}n")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            f"{where}messages: a non-empty list of messages is required", field=f"{where}messages"
        )
    converted = []
    for i, message in enumerate(messages):
        at = f"{where}messages[{i}]"
        role = message.get("role") if isinstance(message, Mapping) else None
        if role not in ROLES:
            raise InvalidRequest(
                f"{at}.role: one of {', '.join(ROLES)} (tool messages are not supported)",
                field=f"{at}.role",
            )
        converted.append({"role": ROLES[role], "content": text_of(message.get("content"), at)})
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS
    metadata = body.get("metadata") or None
    fields: dict[str, Any] = {
        "custom_id": custom_id,
        "model": body.get("model"),
        "messages": converted,
        "max_tokens": max_tokens,
        "metadata": metadata,
    }
    for name in PASSED:
        if body.get(name) is not None:
            fields[name] = body[name]
    if body.get("user") and not (metadata or {}).get("user_id"):
        fields["metadata"] = {**(metadata or {}), "user_id": body["user"]}
    return parse_request(fields, where)


def parse_request(fields: dict[str, Any], where: str) -> RequestIn:
    """``fields`` as a :class:`RequestIn`, its first validation error as a 400 naming the field."""
    if not fields.get("model"):
        raise InvalidRequest(f"{where}model: required", field=f"{where}model")
    try:
        return RequestIn.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = where + field_path(first.get("loc", ()))
        raise InvalidRequest(f"{name}: {first.get('msg')}", field=name) from exc


def usage_of(row: Request) -> dict[str, Any]:
    prompt, completion = row.input_tokens or 0, row.output_tokens or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": row.cached_input_tokens or 0},
    }


def broker_facts(row: Request) -> dict[str, Any]:
    """What the broker adds to every answer (an extra field both SDKs keep)."""
    return {
        "request_id": row.id,
        "cost_usd": format_usd(row.cost_micros or 0),
        "cache": row.cache_hit,
        "route": row.route,
        "provider": row.provider_used,
    }


def completion_id(row: Request) -> str:
    return completion_id_of(row.id)


def completion_id_of(request_id: str) -> str:
    return "chatcmpl-" + request_id.removeprefix("req_")


def created_of(row: Request) -> int:
    return int((row.finished_at or row.created_at).timestamp())


def chat_completion(row: Request) -> dict[str, Any]:
    """A succeeded request as a ``chat.completion`` object."""
    return {
        "id": completion_id(row),
        "object": "chat.completion",
        "created": created_of(row),
        "model": row.model_used or row.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": row.output or "", "refusal": None},
                "finish_reason": openai_finish(row.finish_reason),
                "logprobs": None,
            }
        ],
        "usage": usage_of(row),
        "system_fingerprint": None,
        "x_broker": broker_facts(row),
    }
