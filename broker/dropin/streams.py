"""A finished answer as the Server-Sent Events each SDK reads (DROPIN_REFERENCE.md §5).

The worker records whole answers, so a streamed request is sent as a stream once its answer
is in: the SDKs' stream readers, accumulators and event handlers work unchanged, but the first
token arrives with the last (time to first token is the whole answer's latency).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from broker.dropin import anthropic_wire, openai_wire
from broker.dropin.wire import anthropic_stop, openai_finish
from broker.store import Request

_PIECES = re.compile(r"\S+\s*|\s+")


def pieces(text: str) -> list[str]:
    """The text in word-sized deltas (whitespace kept, so they join back exactly)."""
    return _PIECES.findall(text) or [""]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def openai_chunks(row: Request, include_usage: bool) -> Iterator[bytes]:
    """``chat.completion.chunk`` events: the role, the text, the finish reason, then (with
    ``stream_options.include_usage``) one chunk with ``choices: []`` and the usage; ``[DONE]``."""
    base = {
        "id": openai_wire.completion_id(row),
        "object": "chat.completion.chunk",
        "created": openai_wire.created_of(row),
        "model": row.model_used or row.model,
        "system_fingerprint": None,
    }
    if include_usage:
        base["usage"] = None

    def chunk(delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**base, "choices": [choice]})

    yield chunk({"role": "assistant", "content": "", "refusal": None})
    for piece in pieces(row.output or ""):
        if piece:
            yield chunk({"content": piece})
    yield chunk({}, openai_finish(row.finish_reason))
    if include_usage:
        yield _sse({**base, "choices": [], "usage": openai_wire.usage_of(row)})
    yield b"data: [DONE]\n\n"


def anthropic_events(row: Request) -> Iterator[bytes]:
    """The Messages stream: ``message_start``, one text block's start, deltas and stop,
    ``message_delta`` (stop reason, cumulative usage), ``message_stop``."""
    usage = anthropic_wire.usage_of(row)
    start = {
        **anthropic_wire.message(row),
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**usage, "output_tokens": 1},
    }
    yield _sse({"type": "message_start", "message": start}, "message_start")
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    yield _sse(block, "content_block_start")
    yield _sse({"type": "ping"}, "ping")
    for piece in pieces(row.output or ""):
        if piece:
            delta = {"type": "content_block_delta", "index": 0}
            yield _sse({**delta, "delta": {"type": "text_delta", "text": piece}}, delta["type"])
    yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
    end = {
        "type": "message_delta",
        "delta": {
            "stop_reason": anthropic_stop(row.finish_reason),
            "stop_sequence": anthropic_wire.stop_sequence_of(row),
        },
        "usage": {"output_tokens": usage["output_tokens"]},
    }
    yield _sse(end, "message_delta")
    yield _sse({"type": "message_stop"}, "message_stop")
