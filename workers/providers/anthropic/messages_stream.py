"""Reading a streamed Anthropic Messages answer (``stream: true``).

Every event is named, and the reader dispatches on the name as the official SDK does:
``message_start`` carries the message's id, model and input usage (known from then on as
:attr:`~workers.providers.base.StreamReader.input_tokens`); ``content_block_start`` and
``content_block_delta`` (``text_delta``) carry the text; ``message_delta`` the stop reason and
the cumulative usage (its counts replace the earlier ones); ``message_stop`` ends the message.
``ping``, unnamed and unknown events are skipped, and so are blocks other than text (thinking,
tool use), as :func:`workers.providers.anthropic.messages.parse` skips them.

What :meth:`MessagesStreamReader.finish` returns is what ``parse`` would read from the same
message sent whole; a stream that ended before its stop reason or its ``message_stop`` is
malformed (the answer, and what it cost, would be unknown). An ``event: error`` (overloaded,
say, after the 200) raises the error :mod:`~workers.providers.anthropic.errors` classifies it
as, just as the response would have been classified had it come with the error's status.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from workers.providers.anthropic import api, errors, messages
from workers.providers.base import (
    BodyError,
    Completion,
    StreamAccumulator,
    decode_event,
    field,
)


class MessagesStreamReader(StreamAccumulator):
    """Accumulates one Messages stream (see the module docstring)."""

    provider = "anthropic"
    id_headers = api.REQUEST_ID_HEADERS

    def __init__(self, status: int = 200, headers: httpx.Headers | None = None) -> None:
        super().__init__(status, headers)
        self._usage: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self._stop_sequence: str | None = None
        self._stopped = False
        self._handlers: dict[str, Callable[[dict[str, Any]], str | None]] = {
            "message_start": self._message_start,
            "content_block_start": self._block_start,
            "content_block_delta": self._block_delta,
            "message_delta": self._message_delta,
            "message_stop": self._message_stop,
            "error": self._error,
        }

    def feed(self, event: str, data: str) -> str | None:
        handler = self._handlers.get(event)
        if handler is None:
            return None  # ping, an unnamed or an unknown event: skipped, as the SDK does
        try:
            text = handler(decode_event(data))
        except BodyError as exc:
            raise self._malformed(f"{event}: {exc}") from exc
        if text:
            self._parts.append(text)
        return text or None

    def finish(self) -> Completion:
        model, reason = self._model, self._stop_reason
        if model is None or reason is None or not self._stopped:
            missing = [
                what
                for what, arrived in (
                    ("message_start", model is not None),
                    ("a message_delta with a stop_reason", reason is not None),
                    ("message_stop", self._stopped),
                )
                if not arrived
            ]
            raise self._malformed(f"the stream ended without {' or '.join(missing)}")
        try:
            uncached, cached, output = messages.usage({"usage": self._usage})
        except BodyError as exc:
            raise self._malformed(str(exc)) from exc
        return Completion(
            text="".join(self._parts),
            finish_reason=reason,
            input_tokens=uncached,
            cached_input_tokens=cached,
            output_tokens=output,
            provider_request_id=self._rid,
            model=model,
            stop_sequence=self._stop_sequence,
        )

    # --- one handler per event name; each returns the text the event adds --------------------

    def _message_start(self, event: dict[str, Any]) -> None:
        self._body_id = field(event, "message.id", str, optional=True)
        self._model = field(event, "message.model", str)
        self._usage.update(field(event, "message.usage", dict))
        self.input_tokens = messages.input_usage({"usage": self._usage})

    def _block_start(self, event: dict[str, Any]) -> str | None:
        if field(event, "content_block", dict).get("type") != "text":
            return None
        return field(event, "content_block.text", str, optional=True)

    def _block_delta(self, event: dict[str, Any]) -> str | None:
        if field(event, "delta", dict).get("type") != "text_delta":
            return None  # thinking, signature or tool-input deltas carry no answer text
        return field(event, "delta.text", str)

    def _message_delta(self, event: dict[str, Any]) -> None:
        reason = field(event, "delta.stop_reason", str, optional=True)
        if reason is not None:
            self._stop_reason = reason
            self._stop_sequence = field(event, "delta.stop_sequence", str, optional=True)
        usage = field(event, "usage", dict, optional=True) or {}
        self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _message_stop(self, event: dict[str, Any]) -> None:
        self._stopped = True

    def _error(self, event: dict[str, Any]) -> None:
        raise errors.classify_stream_error(event, "anthropic", self._rid)
