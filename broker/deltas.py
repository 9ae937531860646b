"""A streamed request's answer as it is written: the worker appends, the API process reads.

An SDK call with ``stream: true`` marks its request ``streamed``. The worker that runs it
streams the provider call and appends each text delta to one Redis stream per request
(:func:`broker.redis_keys.deltas`), which the API process reads with a blocking ``XREAD`` and
forwards as the surface's SSE events, so the first token reaches the caller as the provider
writes it. The answer is still recorded whole, as for every request: the stream only carries
it early, and whoever reads it after the end reads the database.

Every entry names its try (``<attempt>.<call>``). A try that fails part-way is followed by
another one's deltas from the start; a reader that has forwarded text from the first cannot
splice them, and ends its stream with an error (the request goes on, and is recorded). The
worker appends an end mark once the request's outcome is recorded; the stream expires
:data:`TTL_S` after its last write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis

from broker import redis_keys

log = logging.getLogger(__name__)

TTL_S = 120
"""A stream no one has written to for this long is gone (its reader has the database)."""
MAX_ENTRIES = 100_000
"""Bounds a runaway stream; far above the deltas of any answer."""
_TRY, _MODEL, _TEXT, _END, _INPUT = b"try", b"model", b"text", b"end", b"input"


class CallSink:
    """One provider call's deltas: called with each text, told the input tokens when the
    provider reports them before the text (they go with the call's first text, for the reader
    to put in its surface's first event)."""

    def __init__(self, append: Callable[[dict], None], try_id: str, model: str) -> None:
        self._append = append
        self._try, self._model = try_id, model
        self._input: tuple[int, int] | None = None
        self._texts = 0

    def started(self, input_tokens: tuple[int, int]) -> None:
        self._input = input_tokens

    def __call__(self, text: str) -> None:
        fields = {_TRY: self._try, _MODEL: self._model, _TEXT: text}
        if self._texts == 0 and self._input is not None:
            fields[_INPUT] = "{},{}".format(*self._input)
        self._texts += 1
        self._append(fields)


class DeltaWriter:
    """Appends one request's deltas (a worker's side): :meth:`call` for each provider call,
    :meth:`end` once its outcome is recorded.

    Redis failing stops the appending, never the call: the answer is recorded all the same,
    and the reader finds the rest of it in the database.
    """

    def __init__(self, client: redis.Redis, request_id: str, attempt: int, model: str) -> None:
        self._client = client
        self._key = redis_keys.deltas(request_id)
        self._attempt = attempt
        self._model = model
        self._calls = 0
        self._broken = False

    def call(self) -> CallSink:
        """The sink for the next provider call's deltas."""
        self._calls += 1
        return CallSink(self._append, f"{self._attempt}.{self._calls}", self._model)

    def end(self) -> None:
        self._append({_END: b"1"})

    def _append(self, fields: dict) -> None:
        if self._broken:
            return
        pipe = self._client.pipeline(transaction=False)
        pipe.xadd(self._key, fields, maxlen=MAX_ENTRIES, approximate=True)
        pipe.expire(self._key, TTL_S)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            self._broken = True
            log.warning(
                "deltas of %s no longer published (%s); its reader reads the row", self._key, exc
            )


@dataclass(frozen=True, slots=True)
class Delta:
    """One appended entry: a try's text and the model writing it, or the end mark. A try's
    first text carries the input tokens (uncached, cached) when the provider reported them
    before the text."""

    try_id: str
    text: str
    model: str = ""
    ended: bool = False
    input_tokens: tuple[int, int] | None = None


class DeltaReader:
    """Reads one request's deltas in order (the API process's side).

    Redis failing reads as nothing written, after the wait: the reader's caller goes on
    looking at the database, and the answer comes whole from the record.
    """

    def __init__(self, client: aioredis.Redis, request_id: str) -> None:
        self._client = client
        self._key = redis_keys.deltas(request_id)
        self._last = b"0-0"

    async def read(self, block_ms: int) -> list[Delta]:
        """What was appended since the last read, waiting up to ``block_ms`` for something."""
        try:
            replies = await self._client.xread({self._key: self._last}, count=512, block=block_ms)
        except redis.RedisError as exc:
            log.warning("deltas of %s unreadable (%s); the record will tell", self._key, exc)
            await asyncio.sleep(block_ms / 1000)
            return []
        found: list[Delta] = []
        for _key, entries in replies or ():
            for entry_id, fields in entries:
                self._last = entry_id
                if _END in fields:
                    found.append(Delta("", "", ended=True))
                else:
                    texts = (fields[_TRY], fields[_TEXT], fields[_MODEL])
                    found.append(Delta(*(t.decode() for t in texts), input_tokens=_input(fields)))
        return found

    async def discard(self) -> None:
        with contextlib.suppress(redis.RedisError):  # it expires anyway
            await self._client.delete(self._key)


def _input(fields: dict) -> tuple[int, int] | None:
    raw = fields.get(_INPUT)
    if raw is None:
        return None
    try:
        uncached, cached = (int(n) for n in raw.split(b","))
    except ValueError:  # not ours to fail on: the tail has the recorded usage
        return None
    return uncached, cached
