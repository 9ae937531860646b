"""Reading a streamed OpenAI-compatible Chat Completion (``stream: true``).

The request asks for ``stream_options.include_usage``, so the stream is: chunks whose
``choices[0].delta.content`` carry the text, one whose ``finish_reason`` is set, then one with
empty ``choices`` and the ``usage`` of the whole call, then ``data: [DONE]``. Events have no
name. The reader keeps what :func:`workers.providers.openai.chat.parse` would read from the
same answer sent whole, so a streamed call costs and reports exactly like a plain one; a stream
that ends before the finish reason or the usage arrived is malformed, since what was billed
would be unknown. A chunk carrying an ``error`` object (sent mid-stream when generation fails
after the 200) raises the error :mod:`~workers.providers.openai.errors` classifies it as.
"""

from __future__ import annotations

from typing import Any

import httpx

from workers.providers.base import (
    BodyError,
    Completion,
    StreamAccumulator,
    decode_event,
    field,
)
from workers.providers.openai import api, chat, errors

#: The data of the event that ends the stream; it carries nothing.
DONE = "[DONE]"


class ChatStreamReader(StreamAccumulator):
    """Accumulates one Chat Completions stream (see the module docstring)."""

    provider = "openai"
    id_headers = api.REQUEST_ID_HEADERS

    def __init__(self, status: int = 200, headers: httpx.Headers | None = None) -> None:
        super().__init__(status, headers)
        self._finish_reason: str | None = None
        self._usage: tuple[int, int, int] | None = None  # uncached, cached, output

    def feed(self, event: str, data: str) -> str | None:
        if data.strip() == DONE:
            return None
        try:
            chunk = decode_event(data)
            if chunk.get("error") is not None:
                raise errors.classify_stream_error(chunk, "openai", self._rid)
            return self._take(chunk)
        except BodyError as exc:
            raise self._malformed(str(exc)) from exc

    def finish(self) -> Completion:
        model, reason, usage = self._model, self._finish_reason, self._usage
        if model is None or reason is None or usage is None:
            missing = [
                what
                for what, value in (
                    ("a chunk naming the model", model),
                    ("a finish_reason", reason),
                    ("a usage chunk", usage),
                )
                if value is None
            ]
            raise self._malformed(f"the stream ended without {' or '.join(missing)}")
        uncached, cached, output = usage
        return Completion(
            text="".join(self._parts),
            finish_reason=reason,
            input_tokens=uncached,
            cached_input_tokens=cached,
            output_tokens=output,
            provider_request_id=self._rid,
            model=model,
        )

    def _take(self, chunk: dict[str, Any]) -> str | None:
        """Record what one ``chat.completion.chunk`` says; its text, if any."""
        self._body_id = self._body_id or field(chunk, "id", str, optional=True)
        self._model = field(chunk, "model", str, optional=True) or self._model
        if chunk.get("usage") is not None:
            self._usage = chat.usage(chunk)
        choices = field(chunk, "choices", list)
        if not choices:
            return None  # the usage chunk
        field(chunk, "choices.0.delta", dict)
        reason = field(chunk, "choices.0.finish_reason", str, optional=True)
        if reason is not None:
            self._finish_reason = reason
        # Null content is a refusal or tool calls: no text, as for a whole response.
        text = field(chunk, "choices.0.delta.content", str, optional=True)
        if text:
            self._parts.append(text)
        return text or None
