"""OpenAI Chat Completions as the simulator speaks it: request checks, bodies, errors, headers.

Shapes follow WIRE_FORMATS.md and the official SDK's types field for field, because the point of
the simulator is that our adapters cannot tell it from the real API.

``top_p`` is checked and has no visible effect; ``stop`` (up to 4) cuts the answer before the
first sequence (``finish_reason: stop``); ``seed`` picks a deterministic answer of its own;
``response_format`` ``json_object`` or ``json_schema`` makes the answer a JSON object
(:mod:`workers.simulator.structured`). Anthropic's ``top_k`` is refused as an unrecognized
argument, as the API does.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
from collections.abc import AsyncIterator, Mapping

from workers.simulator.limits import LimitKind, Refusal, WindowState, go_duration
from workers.simulator.settings import Wire
from workers.simulator.text import Completion, content_text, count_input_tokens, prompt_digest
from workers.simulator.wire import (
    ParsedRequest,
    SimError,
    check_type,
    decode_object,
    paced,
    random_id,
    require,
    text_pieces,
)

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    422: "invalid_request_error",
}
_STATUS_MESSAGES = {
    500: "The server had an error while processing your request. Sorry about that!",
    502: "Bad gateway.",
    503: "The server is overloaded or not ready yet.",
    504: "Gateway timeout.",
}
_SCHEMA_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
#: Parameters of other APIs an adapter might send here by mistake: refused as the API does.
_UNRECOGNIZED = ("top_k", "stop_sequences")


def _fingerprint(model: str) -> str:
    return "fp_" + hashlib.sha256(model.encode("utf-8")).hexdigest()[:10]


def _positive_int(data: dict, field: str) -> int | None:
    value = check_type(data, field, int, "an integer")
    if value is not None and value < 1:
        raise SimError(
            400,
            f"Invalid '{field}': integer below minimum value. Expected a value >= 1, "
            f"but got {value} instead.",
            param=field,
            code="integer_below_min_value",
        )
    return value


def _stop(data: dict) -> list[str] | None:
    stop = data.get("stop")
    if stop is None:
        return None
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and len(stop) > 4:
        raise SimError(
            400,
            "Invalid 'stop': array too long. Expected an array with maximum length 4, but got "
            f"an array with length {len(stop)} instead.",
            param="stop",
            code="array_above_max_length",
        )
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        return stop
    raise SimError(
        400,
        "Invalid 'stop': expected a string or up to 4 strings.",
        param="stop",
        code="invalid_type",
    )


def _unit_number(data: dict, field: str) -> float | None:
    """A number in [0, 1] (``top_p``), refused in the API's words otherwise."""
    value = check_type(data, field, (int, float), "a number")
    if value is None or 0 <= value <= 1:
        return value
    above = value > 1
    raise SimError(
        400,
        f"Invalid '{field}': decimal {'above maximum' if above else 'below minimum'} value. "
        f"Expected a value {'<= 1' if above else '>= 0'}, but got {value} instead.",
        param=field,
        code="decimal_above_max_value" if above else "decimal_below_min_value",
    )


def _response_format(data: dict, messages: list[dict]) -> dict | None:
    """The schema a JSON answer follows (``{}``: any object), or None for text.

    Checked as the API does, including its rule that ``json_object`` needs the word "json"
    somewhere in the messages (it guards against a model emitting white space forever)."""
    form = check_type(data, "response_format", dict, "an object")
    if form is None:
        return None
    kind = form.get("type")
    if kind not in ("text", "json_object", "json_schema"):
        raise SimError(
            400,
            f"Invalid value: {kind!r}. Supported values are: 'json_object', 'json_schema', "
            "and 'text'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind == "text":
        return None
    if kind == "json_object":
        if not any("json" in content_text(m.get("content")).lower() for m in messages):
            raise SimError(
                400,
                "'messages' must contain the word 'json' in some form, to use "
                "'response_format' of type 'json_object'.",
                param="messages",
            )
        return {}
    spec = form.get("json_schema")
    if not isinstance(spec, dict):
        raise SimError(
            400,
            "Missing required parameter: 'response_format.json_schema'.",
            param="response_format.json_schema",
            code="missing_required_parameter",
        )
    name = spec.get("name")
    if not isinstance(name, str) or not _SCHEMA_NAME.fullmatch(name):
        raise SimError(
            400,
            "Invalid 'response_format.json_schema.name': expected a string of letters, "
            "digits, underscores and dashes, at most 64 long.",
            param="response_format.json_schema.name",
            code="invalid_value" if isinstance(name, str) else "missing_required_parameter",
        )
    schema = spec.get("schema")
    if schema is not None and not isinstance(schema, dict):
        raise SimError(
            400,
            "Invalid type for 'response_format.json_schema.schema': expected an object.",
            param="response_format.json_schema.schema",
            code="invalid_type",
        )
    return schema or {}


def _messages(data: dict) -> list[dict]:
    messages = require(data, "messages", list, "an array")
    if not messages:
        raise SimError(
            400,
            "Invalid 'messages': empty array. Expected an array with minimum "
            "length 1, but got an empty array instead.",
            param="messages",
            code="empty_array",
        )
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise SimError(
                400,
                f"Invalid type for 'messages[{i}]': expected an object.",
                param=f"messages[{i}]",
                code="invalid_type",
            )
        if message.get("role") not in _ROLES:
            raise SimError(
                400,
                f"Invalid value for 'messages[{i}].role': {message.get('role')!r}.",
                param=f"messages[{i}].role",
                code="invalid_value",
            )
        if "content" not in message and message["role"] != "assistant":
            raise SimError(
                400,
                f"Missing required parameter: 'messages[{i}].content'.",
                param=f"messages[{i}].content",
                code="missing_required_parameter",
            )
    return messages


class OpenAIFormat:
    wire = Wire.OPENAI
    request_id_header = "x-request-id"
    default_outage_status = 503
    injected_statuses = (500, 503)

    def new_request_id(self) -> str:
        return random_id("req_", 16)

    def check_auth(self, headers: Mapping[str, str], api_key: str) -> None:
        authorization = headers.get("authorization", "")
        if not authorization.startswith("Bearer ") or not authorization[7:].strip():
            raise SimError(
                401,
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            )
        given = authorization[7:].strip()
        if given != api_key:
            shown = given[:3] + "*" * 4 + given[-4:] if len(given) > 8 else "***"
            raise SimError(401, f"Incorrect API key provided: {shown}.", code="invalid_api_key")

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedRequest:
        data = decode_object(body)
        model = require(data, "model", str, "a string")
        if not model:
            raise SimError(
                400, "Invalid 'model': empty string.", param="model", code="invalid_value"
            )
        for name in _UNRECOGNIZED:
            if name in data:
                raise SimError(400, f"Unrecognized request argument supplied: {name}")
        messages = _messages(data)
        max_tokens = _positive_int(data, "max_completion_tokens")
        if max_tokens is None:
            max_tokens = _positive_int(data, "max_tokens")
        temperature = check_type(data, "temperature", (int, float), "a number")
        if temperature is not None and not 0 <= temperature <= 2:
            raise SimError(
                400,
                f"Invalid 'temperature': expected a value between 0 and 2, "
                f"but got {temperature} instead.",
                param="temperature",
                code="decimal_above_max_value",
            )
        _unit_number(data, "top_p")  # sampling: no visible effect on the simulated answer
        seed = check_type(data, "seed", int, "an integer")
        json_schema = _response_format(data, messages)
        stream = bool(check_type(data, "stream", bool, "a boolean"))
        options = check_type(data, "stream_options", dict, "an object")
        if options is not None and not stream:
            raise SimError(
                400,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                param="stream_options",
                code="invalid_value",
            )
        texts = [content_text(m.get("content")) for m in messages]
        if json_schema:  # the API puts the schema in the prompt, and bills it
            texts.append(json.dumps(json_schema, sort_keys=True))
        # A seed picks its own (still deterministic) answer; without one, the prompt alone.
        prompt = messages if seed is None else {"messages": messages, "seed": seed}
        return ParsedRequest(
            model=model,
            max_tokens=max_tokens,
            digest=prompt_digest(model, prompt),
            input_tokens=count_input_tokens(texts),
            stop=_stop(data),
            json_schema=json_schema,
            stream=stream,
            include_usage=bool(options and options.get("include_usage")),
            last_user=_last_user(messages),
        )

    def quota_error(self) -> SimError | None:
        return SimError(
            429,
            "You exceeded your current quota, please check your plan and billing details. For "
            "more information on this error, read the docs: "
            "https://platform.openai.com/docs/guides/error-codes/api-errors.",
            type="insufficient_quota",
            code="insufficient_quota",
        )

    def rate_limit_error(self, refusal: Refusal, model: str) -> SimError:
        requests = refusal.kind is LimitKind.REQUESTS
        per = "requests per min (RPM)" if requests else "tokens per min (TPM)"
        return SimError(
            429,
            f"Rate limit reached for {model} in organization org-simulator on {per}: "
            f"Limit {refusal.limit}, Used {refusal.used}, Requested {refusal.requested}. "
            f"Please try again in {go_duration(refusal.retry_after_s)}. Visit "
            "https://platform.openai.com/account/rate-limits to learn more.",
            type=refusal.kind.value,
            code="rate_limit_exceeded",
            retry_after_s=refusal.retry_after_s,
        )

    def status_error(self, status: int) -> SimError:
        if status == 429:
            return SimError(
                429,
                "Rate limit reached. Please try again in 1s.",
                type="requests",
                code="rate_limit_exceeded",
                retry_after_s=1.0,
            )
        return SimError(status, _STATUS_MESSAGES.get(status, f"Simulated error {status}."))

    def error_payload(self, error: SimError, request_id: str) -> dict:
        default_type = (
            "server_error"
            if error.status >= 500
            else _STATUS_TYPES.get(error.status, "invalid_request_error")
        )
        return {
            "error": {
                "message": error.message,
                "type": error.type or default_type,
                "param": error.param,
                "code": error.code,
            }
        }

    def _usage(self, completion: Completion) -> dict:
        return {
            "prompt_tokens": completion.input_tokens,
            "completion_tokens": completion.output_tokens,
            "total_tokens": completion.total_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def success_payload(self, request: ParsedRequest, completion: Completion) -> dict:
        return {
            "id": random_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text, "refusal": None},
                    "finish_reason": "length" if completion.capped else "stop",
                    "logprobs": None,
                }
            ],
            "usage": self._usage(completion),
            "system_fingerprint": _fingerprint(request.model),
            "service_tier": "default",
        }

    async def stream(
        self, request: ParsedRequest, completion: Completion, pause_s: float
    ) -> AsyncIterator[bytes]:
        """Server-sent chunks: role, content in a few words each (``pause_s`` apart), finish,
        optional usage, DONE."""
        base = {
            "id": random_id("chatcmpl-"),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": _fingerprint(request.model),
            "service_tier": "default",
        }
        usage_field = {"usage": None} if request.include_usage else {}

        def chunk(delta: dict, finish: str | None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            body = {**base, "choices": [choice], **usage_field}
            return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

        yield chunk({"role": "assistant", "content": "", "refusal": None}, None)
        async for piece in paced(text_pieces(completion.text), pause_s):
            yield chunk({"content": piece}, None)
        yield chunk({}, "length" if completion.capped else "stop")
        if request.include_usage:
            body = {**base, "choices": [], "usage": self._usage(completion)}
            yield b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
        yield b"data: [DONE]\n\n"

    def limit_headers(self, state: WindowState) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(state.limit_requests),
            "x-ratelimit-limit-tokens": str(state.limit_tokens),
            "x-ratelimit-remaining-requests": str(state.remaining_requests),
            "x-ratelimit-remaining-tokens": str(state.remaining_tokens),
            "x-ratelimit-reset-requests": go_duration(state.reset_requests_s),
            "x-ratelimit-reset-tokens": go_duration(state.reset_tokens_s),
        }

    def retry_headers(self, retry_after_s: float) -> dict[str, str]:
        return {
            "retry-after": str(max(1, math.ceil(retry_after_s))),
            "retry-after-ms": str(max(1, math.ceil(retry_after_s * 1000))),
        }


def _last_user(messages: list[dict]) -> str | None:
    users = [m for m in messages if m.get("role") == "user"]
    return content_text(users[-1].get("content")) if users else None
