"""Anthropic Messages as the simulator speaks it: request checks, bodies, errors, headers.

Validation messages imitate the real API's ``field: reason`` wording, and the required
``anthropic-version`` header is enforced, so an adapter that forgets it fails here first.
``stream: true`` gets the API's named server-sent events: ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta`` a few words at a time,
``content_block_stop``, ``message_delta`` (stop reason and output tokens), ``message_stop``.

``top_p`` and ``top_k`` are checked and have no visible effect; ``stop_sequences`` cut the
answer (``stop_reason: stop_sequence`` with the sequence in ``stop_sequence``);
``output_config.format`` makes it a JSON object following the schema. OpenAI's names for
these (``stop``, ``seed``, ``response_format``) are refused as extra inputs, as the API does.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

from workers.simulator.limits import LimitKind, Refusal, WindowState
from workers.simulator.settings import Wire
from workers.simulator.text import Completion, content_text, count_input_tokens, prompt_digest
from workers.simulator.wire import (
    ParsedRequest,
    SimError,
    decode_object,
    paced,
    random_id,
    text_pieces,
)

_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STATUS_MESSAGES = {500: "Internal server error", 529: "Overloaded", 429: "Rate limited"}
#: Parameters of other APIs an adapter might send here by mistake: refused as the API does.
_EXTRA = ("stop", "seed", "response_format", "max_completion_tokens")
_KINDS = {
    str: "a valid string",
    int: "a valid integer",
    list: "a valid list",
    bool: "a valid boolean",
    dict: "a valid dictionary",
}


def _invalid(message: str) -> SimError:
    return SimError(400, message)


def _field(data: dict, name: str, kind: type, *, required: bool = False) -> Any:
    """``data[name]`` checked like the API's validator, with its ``name: reason`` messages."""
    if data.get(name) is None:
        if required:
            raise _invalid(f"{name}: Field required")
        return None
    value = data[name]
    if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise _invalid(f"{name}: Input should be {_KINDS[kind]}")
    return value


def _unit_number(data: dict, name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _invalid(f"{name}: Input should be a valid number")
    if value < 0:
        raise _invalid(f"{name}: Input should be greater than or equal to 0")
    if value > 1:
        raise _invalid(f"{name}: Input should be less than or equal to 1")
    return value


def _output_schema(data: dict) -> dict | None:
    """``output_config.format`` (structured outputs): the schema the answer follows, or None."""
    config = _field(data, "output_config", dict)
    if config is None or config.get("format") is None:
        return None
    form = config["format"]
    if not isinstance(form, dict):
        raise _invalid("output_config.format: Input should be a valid dictionary")
    if form.get("type") != "json_schema":
        raise _invalid("output_config.format.type: Input should be 'json_schema'")
    schema = form.get("schema")
    if schema is None:
        raise _invalid("output_config.format.schema: Field required")
    if not isinstance(schema, dict):
        raise _invalid("output_config.format.schema: Input should be a valid dictionary")
    return schema


def _system_text(system: object) -> str | None:
    if system is None or isinstance(system, str):
        return system
    if isinstance(system, list) and all(
        isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
        for b in system
    ):
        return "\n".join(b["text"] for b in system)
    raise _invalid("system: Input should be a valid string or a list of text blocks")


def _messages(data: dict) -> list[dict]:
    messages = _field(data, "messages", list, required=True)
    if not messages:
        raise _invalid("messages: List should have at least 1 item after validation, not 0")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _invalid(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role == "system":
            raise _invalid(
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise _invalid(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        content = message.get("content")
        if content is None:
            raise _invalid(f"messages.{i}.content: Field required")
        if not isinstance(content, str | list):
            raise _invalid(f"messages.{i}.content: Input should be a valid list")
    return messages


def _rfc3339(seconds_from_now: float) -> str:
    at = datetime.fromtimestamp(time.time() + max(seconds_from_now, 0.0), UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


class AnthropicFormat:
    wire = Wire.ANTHROPIC
    request_id_header = "request-id"
    default_outage_status = 529
    injected_statuses = (500, 529)

    def new_request_id(self) -> str:
        return random_id("req_011C", 12)

    def check_auth(self, headers: Mapping[str, str], api_key: str) -> None:
        """``x-api-key`` as documented, or ``Authorization: Bearer`` as anthropic SDK 2.x sends."""
        given = headers.get("x-api-key")
        if not given:
            authorization = headers.get("authorization", "")
            given = authorization[7:].strip() if authorization.startswith("Bearer ") else None
        if not given:
            raise SimError(401, "x-api-key header is required")
        if given != api_key:
            raise SimError(401, "invalid x-api-key")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedRequest:
        if not headers.get("anthropic-version"):
            raise _invalid("anthropic-version: header is required")
        data = decode_object(body)
        for name in _EXTRA:
            if name in data:
                raise _invalid(f"{name}: Extra inputs are not permitted")
        model = _field(data, "model", str, required=True)
        max_tokens = _field(data, "max_tokens", int, required=True)
        if max_tokens < 1:
            raise _invalid("max_tokens: Input should be greater than or equal to 1")
        messages = _messages(data)
        system = _system_text(data.get("system"))
        temperature = data.get("temperature")
        if temperature is not None and (
            isinstance(temperature, bool)
            or not isinstance(temperature, int | float)
            or not 0 <= temperature <= 1
        ):
            raise _invalid("temperature: Input should be a number between 0 and 1")
        stop = _field(data, "stop_sequences", list)
        if stop is not None and not all(isinstance(s, str) for s in stop):
            raise _invalid("stop_sequences: Input should be a list of strings")
        _unit_number(data, "top_p")  # sampling: no visible effect on the simulated answer
        top_k = _field(data, "top_k", int)
        if top_k is not None and top_k < 0:
            raise _invalid("top_k: Input should be greater than or equal to 0")
        json_schema = _output_schema(data)
        stream = bool(_field(data, "stream", bool))
        texts = ([system] if system else []) + [content_text(m["content"]) for m in messages]
        if json_schema is not None:  # the API puts the schema in the prompt, and bills it
            texts.append(json.dumps(json_schema, sort_keys=True))
        return ParsedRequest(
            model=model,
            max_tokens=max_tokens,
            digest=prompt_digest(model, {"system": system, "messages": messages}),
            input_tokens=count_input_tokens(texts),
            stop=stop,
            json_schema=json_schema,
            stream=stream,
            last_user=_last_user(messages),
        )

    def quota_error(self) -> SimError | None:
        return None  # quota exhaustion is simulated for the OpenAI format only

    def rate_limit_error(self, refusal: Refusal, model: str) -> SimError:
        unit = "requests" if refusal.kind is LimitKind.REQUESTS else "tokens"
        return SimError(
            429,
            f"This request would exceed the rate limit for your organization (org-simulator) "
            f"of {refusal.limit} {unit} per minute for {model}. For details, refer to: "
            "https://docs.claude.com/en/api/rate-limits. You can see the response headers for "
            "current usage. Please reduce the prompt length or the maximum tokens requested, "
            "or try again later.",
            retry_after_s=refusal.retry_after_s,
        )

    def status_error(self, status: int) -> SimError:
        retry = 1.0 if status == 429 else None
        return SimError(
            status, _STATUS_MESSAGES.get(status, f"Simulated error {status}"), retry_after_s=retry
        )

    def error_payload(self, error: SimError, request_id: str) -> dict:
        default = "api_error" if error.status >= 500 else "invalid_request_error"
        kind = _STATUS_TYPES.get(error.status, default)
        return {
            "type": "error",
            "error": {"type": kind, "message": error.message},
            "request_id": request_id,
        }

    def success_payload(self, request: ParsedRequest, completion: Completion) -> dict:
        if completion.stop_sequence is not None:
            stop_reason = "stop_sequence"
        else:
            stop_reason = "max_tokens" if completion.capped else "end_turn"
        return {
            "id": random_id("msg_01"),
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": [{"type": "text", "text": completion.text}],
            "stop_reason": stop_reason,
            "stop_sequence": completion.stop_sequence,
            "usage": {
                "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    async def stream(
        self, request: ParsedRequest, completion: Completion, pause_s: float
    ) -> AsyncIterator[bytes]:
        """The events of one text block: the answer in a few words per delta, ``pause_s`` apart.

        Ids, stop reason, stop sequence and usage are those of :meth:`success_payload`.
        """
        message = self.success_payload(request, completion)
        yield _event("message_start", {"message": _started(message)})
        yield _event(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        yield _event("ping", {})
        async for piece in paced(text_pieces(completion.text), pause_s):
            yield _event(
                "content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}}
            )
        yield _event("content_block_stop", {"index": 0})
        delta = {key: message[key] for key in ("stop_reason", "stop_sequence")}
        usage = {"output_tokens": message["usage"]["output_tokens"]}
        yield _event("message_delta", {"delta": delta, "usage": usage})
        yield _event("message_stop", {})

    def limit_headers(self, state: WindowState) -> dict[str, str]:
        requests_reset = _rfc3339(state.reset_requests_s)
        tokens_reset = (
            requests_reset
            if state.reset_tokens_s == state.reset_requests_s
            else _rfc3339(state.reset_tokens_s)
        )
        return {
            "anthropic-ratelimit-requests-limit": str(state.limit_requests),
            "anthropic-ratelimit-requests-remaining": str(state.remaining_requests),
            "anthropic-ratelimit-requests-reset": requests_reset,
            "anthropic-ratelimit-tokens-limit": str(state.limit_tokens),
            "anthropic-ratelimit-tokens-remaining": str(state.remaining_tokens),
            "anthropic-ratelimit-tokens-reset": tokens_reset,
        }

    def retry_headers(self, retry_after_s: float) -> dict[str, str]:
        return {"retry-after": str(max(1, math.ceil(retry_after_s)))}


def _event(name: str, fields: dict) -> bytes:
    """One server-sent event; its ``data`` repeats the name as ``type``, as the API's do."""
    data = json.dumps({"type": name, **fields}, separators=(",", ":"))
    return f"event: {name}\ndata: {data}\n\n".encode()


def _started(message: dict) -> dict:
    """``message`` as ``message_start`` shows it: no content or stop reason yet, one token out."""
    usage = message["usage"]
    return {
        "id": message["id"],
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": message["model"],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": min(1, usage["output_tokens"])},
    }


def _last_user(messages: list[dict]) -> str | None:
    users = [m for m in messages if m.get("role") == "user"]
    return content_text(users[-1].get("content")) if users else None
