"""A streamed SDK call's answer as it is written, read from the worker's deltas.

The text is the deltas of one try (:mod:`broker.deltas`), forwarded as they arrive, then the
rest of the recorded answer: whatever the deltas did not carry (a worker that lost Redis part
of the way) is sent from the row once it has ended. An answer that does not continue the text
already sent (the try failed part-way and another one began, or the request failed) cannot be
mended in a stream: the stream ends with the surface's error event, and the request goes on
and is recorded as any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

from broker.deltas import Delta, DeltaReader
from broker.dropin.streams import StreamOf
from broker.states import RequestStatus
from broker.store import Request

BROKEN = "the provider failed part-way through this answer and the request was retried"


class Live:
    """The deltas read so far and the means to read the rest."""

    def __init__(
        self,
        request_id: str,
        reader: DeltaReader,
        first: list[Delta],
        ended: Callable[[], Awaitable[Request | None]],
        block_ms: int,
    ) -> None:
        self.request_id = request_id
        self._reader = reader
        self._pending = first
        self._ended = ended
        self._block_ms = block_ms
        self._row_seen: Request | None = None  # found ended while reading the text
        texts = [d for d in first if not d.ended]
        self._try = texts[0].try_id
        self.model = texts[0].model
        self._input_tokens = texts[0].input_tokens  # as the provider reported them at the start

    async def events(self, stream_of: StreamOf) -> AsyncIterator[bytes]:
        """The surface's events: head, the text as it is written, and the tail from the row
        (or an error event)."""
        stream = stream_of(self.request_id, self.model, None)
        yield stream.head(self._input_tokens)
        sent: list[str] = []
        try:
            async for text in self._texts():
                sent.append(text)
                yield stream.delta(text)
            row = await self._row()
            forwarded = "".join(sent)
            output = row.output or ""
            if row.status != RequestStatus.SUCCEEDED:
                yield stream.error(row.error or f"the request ended {row.status}")
            elif not output.startswith(forwarded):
                yield stream.error(BROKEN)
            else:
                if len(output) > len(forwarded):
                    yield stream.delta(output[len(forwarded) :])
                for event in stream.tail(row):
                    yield event
        finally:
            await self._reader.discard()

    async def _texts(self) -> AsyncIterator[str]:
        """This try's text until the end mark, another try, or the row found ended."""
        while True:
            for delta in self._pending:
                if delta.ended or delta.try_id != self._try:
                    return
                if delta.text:
                    yield delta.text
            self._pending = await self._reader.read(self._block_ms)
            if not self._pending and (row := await self._ended()) is not None:
                self._row_seen = row
                self._pending = await self._reader.read(1)  # what came before the end
                if not self._pending:
                    return

    async def _row(self) -> Request:
        """The recorded row, once the request has ended (another try may still be running)."""
        if self._row_seen is not None:
            return self._row_seen
        while (row := await self._ended()) is None:
            await self._reader.read(self._block_ms)
        return row
