"""What the OpenAI and Anthropic surfaces share: content text, finish reasons, refusals of
parameters the broker cannot honour.

The broker's request carries messages, ``max_tokens``, ``temperature`` and, when given,
``top_p``, ``stop``, ``seed``, ``top_k`` and ``response_format`` (what its cache key and budget
reservation are built from, and what the provider adapters pass on). A parameter that would
change the answer and that we cannot pass on (``tools``, ``logprobs``, penalties, ``n > 1``,
images...) is refused with a 400 that names it, never silently dropped: an answer to a
different question is worse than an error. So is one the model's provider cannot honour
(``top_k`` on an OpenAI-format model, a ``json_object`` format on an Anthropic one): the
submission refuses it for the model asked for, the adapter for a model down its chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from broker.errors import InvalidRequest

DEFAULT_MAX_TOKENS = 1024
"""``max_tokens`` when an OpenAI request gives none: the budget reserves this worst case."""

FEATURE_HEADER = "x-broker-feature"
TRACE_HEADER = "x-broker-trace-id"
DEFAULT_FEATURE = "default"


def text_of(content: Any, where: str) -> str:
    """A message's text: a string, or a list of text blocks (``{"type": "text", "text"}``)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for i, block in enumerate(content):
            if not isinstance(block, Mapping) or block.get("type") != "text":
                kind = block.get("type") if isinstance(block, Mapping) else type(block).__name__
                raise InvalidRequest(
                    f"{where}[{i}]: only text content is supported by the broker, not {kind!r}",
                    field=f"{where}[{i}]",
                )
            text = block.get("text")
            if not isinstance(text, str):
                raise InvalidRequest(f"{where}[{i}].text: must be a string", field=where)
            parts.append(text)
        return "\n".join(parts)
    raise InvalidRequest(f"{where}: must be a string or a list of text blocks", field=where)


def refuse_unsupported(body: Mapping[str, Any], names: Iterable[str], where: str) -> None:
    """400 for the first of ``names`` present with a value that would change the answer."""
    for name in names:
        value = body.get(name)
        if value is None or value is False or value == [] or value == {}:
            continue
        raise InvalidRequest(
            f"{where}{name}: not supported by the broker (it would change the answer and "
            "cannot be passed on); leave it out",
            field=f"{where}{name}",
        )


def feature_of(headers: Mapping[str, str], metadata: Mapping[str, Any] | None) -> str:
    """The feature a request is attributed to: the ``x-broker-feature`` header, else
    ``metadata.feature``, else ``default``."""
    feature = headers.get(FEATURE_HEADER) or (metadata or {}).get("feature") or DEFAULT_FEATURE
    return str(feature)


# Provider finish reasons, both ways (the worker keeps what the provider said). OpenAI says
# "stop" for a natural end and a stop sequence alike, so its answers reach the Anthropic
# surface as "end_turn" either way; Anthropic's "stop_sequence" reaches OpenAI's as "stop".
TO_OPENAI = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}
TO_ANTHROPIC = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
OPENAI_REASONS = {"stop", "length", "tool_calls", "content_filter", "function_call"}
ANTHROPIC_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal"}


def openai_finish(reason: str | None) -> str:
    if reason in OPENAI_REASONS:
        return reason
    return TO_OPENAI.get(reason or "", "stop")


def anthropic_stop(reason: str | None) -> str:
    if reason in ANTHROPIC_REASONS:
        return reason
    return TO_ANTHROPIC.get(reason or "", "end_turn")


BAD_REQUEST_CODES = {
    "invalid_request",
    "context_length_exceeded",
    "context_window_exceeded",
    "provider_rejected",  # the provider (or its adapter) refused the request itself: no retry
}
RATE_LIMIT_CODES = {"rate_limited", "rate_limit_exceeded", "rate_limit"}


def failure_of(status: str, code: str | None, message: str | None) -> tuple[int, str, str, dict]:
    """``(HTTP status, code, message, headers)`` for an interactive request that did not
    succeed, chosen so the SDKs retry what may pass later and fail fast on what will not."""
    text = message or code or status
    if status == "expired":
        return 504, "expired", "not started within the completion window; retry later", {}
    if status == "cancelled":
        return 408, "cancelled", "the request was cancelled before it ran", {}
    if code == "budget_exceeded":  # no retry will fit until the window turns
        return 429, code, text, {"x-should-retry": "false"}
    if code in RATE_LIMIT_CODES:
        return 429, code, text, {"retry-after": "1"}
    if code in BAD_REQUEST_CODES:
        return 400, code, text, {}
    if code == "unknown_model":
        return 404, code, text, {}
    return 502, code or "provider_error", f"the provider call failed: {text}", {}
