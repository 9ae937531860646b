"""An answer as the Server-Sent Events each SDK reads (DROPIN_REFERENCE.md §5).

Each surface's stream is a head, text deltas, and a tail written from the recorded row (finish
reason, usage), or an error event when the answer could not be finished. A streamed request
(:mod:`broker.deltas`) sends its deltas as the provider writes them; an answer that was whole
before the first delta arrived (a cache hit, say) is sent as a stream of word-sized deltas, so
the SDKs' stream readers, accumulators and event handlers work the same on both.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

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


class Stream(Protocol):
    """One surface's events for one answer."""

    def head(self, input_tokens: tuple[int, int] | None = None) -> bytes:
        """The first events; ``input_tokens`` (uncached, cached): what the provider reported
        before the text of an answer still being written, for a surface that starts with
        them."""
        ...

    def delta(self, text: str) -> bytes: ...

    def tail(self, row: Request) -> Iterator[bytes]: ...

    def error(self, message: str) -> bytes: ...


class OpenAIStream:
    """``chat.completion.chunk`` events: the role, the text, the finish reason, then (with
    ``stream_options.include_usage``) one chunk with ``choices: []`` and the usage; ``[DONE]``.
    An error is a chunk with an ``error`` object, which the SDK raises as ``APIError``."""

    def __init__(self, request_id: str, model: str, created: int, include_usage: bool) -> None:
        self._base: dict[str, Any] = {
            "id": openai_wire.completion_id_of(request_id),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "system_fingerprint": None,
        }
        if include_usage:
            self._base["usage"] = None
        self._include_usage = include_usage

    def _chunk(self, delta: dict, finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**self._base, "choices": [choice]})

    def head(self, input_tokens: tuple[int, int] | None = None) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def delta(self, text: str) -> bytes:
        return self._chunk({"content": text})

    def tail(self, row: Request) -> Iterator[bytes]:
        yield self._chunk({}, openai_finish(row.finish_reason))
        if self._include_usage:
            yield _sse({**self._base, "choices": [], "usage": openai_wire.usage_of(row)})
        yield b"data: [DONE]\n\n"

    def error(self, message: str) -> bytes:
        return _sse({"error": {"message": message, "type": "server_error", "code": None}})


class AnthropicStream:
    """The Messages stream: ``message_start``, one text block's start, deltas and stop,
    ``message_delta`` (stop reason, cumulative usage), ``message_stop``; an error is an
    ``error`` event, which the SDK raises."""

    def __init__(self, request_id: str, model: str, usage: dict | None = None) -> None:
        self._id = anthropic_wire.message_id_of(request_id)
        self._model = model
        self._usage = usage  # a whole answer's; None while it is being written

    def head(self, input_tokens: tuple[int, int] | None = None) -> bytes:
        """Usage as known at the start: a whole answer's, or the input tokens a live one's
        provider reported before its text. An OpenAI-format provider reports them only at the
        end, so its live answer starts with zero and ``message_delta`` carries them (SDKs
        older than 0.50 keep the zero)."""
        usage = self._usage or anthropic_wire.usage(*(input_tokens or (0, 0)), 0)
        start = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}  # fmt: skip
        return (
            _sse({"type": "message_start", "message": start}, "message_start")
            + _sse(block, "content_block_start")
            + _sse({"type": "ping"}, "ping")
        )

    def delta(self, text: str) -> bytes:
        delta = {"type": "content_block_delta", "index": 0}
        return _sse({**delta, "delta": {"type": "text_delta", "text": text}}, delta["type"])

    def tail(self, row: Request) -> Iterator[bytes]:
        yield _sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        end = {
            "type": "message_delta",
            "delta": {
                "stop_reason": anthropic_stop(row.finish_reason),
                "stop_sequence": anthropic_wire.stop_sequence_of(row),
            },
            "usage": anthropic_wire.usage_of(row),
        }
        yield _sse(end, "message_delta")
        yield _sse({"type": "message_stop"}, "message_stop")

    def error(self, message: str) -> bytes:
        return _sse({"type": "error", "error": {"type": "api_error", "message": message}}, "error")


StreamOf = Callable[[str, str, Request | None], Stream]
"""A surface's stream for (request id, model, the recorded row when the answer is whole)."""


def openai_of(include_usage: bool) -> StreamOf:
    def of(request_id: str, model: str, row: Request | None) -> Stream:
        created = openai_wire.created_of(row) if row is not None else int(time.time())
        return OpenAIStream(request_id, model, created, include_usage)

    return of


def anthropic_of(request_id: str, model: str, row: Request | None) -> Stream:
    usage = {**anthropic_wire.usage_of(row), "output_tokens": 1} if row is not None else None
    return AnthropicStream(request_id, model, usage)


def replay(stream_of: StreamOf, row: Request) -> Iterator[bytes]:
    """A whole answer as the surface's events, in word-sized deltas."""
    stream = stream_of(row.id, row.model_used or row.model, row)
    yield stream.head()
    for piece in pieces(row.output or ""):
        if piece:
            yield stream.delta(piece)
    yield from stream.tail(row)
