"""Redis round trips: one per caller, or one for whatever many threads asked for meanwhile.

A caller hands over a *fill*, a function that queues its commands on a pipeline, and gets
their replies back. :class:`Pipelines` sends each fill at once. :class:`BatchedPipelines` is
group commit for Redis, as :mod:`workers.recorder` is for the database: a worker pool's
threads each end an attempt with a few Redis writes (breaker admission, cache entry, flight,
scheduler feedback), and a round trip costs more CPU on both ends than the commands in it.
One thread sends what has gathered since its last round trip as one ``MULTI``/``EXEC``;
under no load a fill goes at once, under load the round trips grow by themselves.

Either way each fill runs in its own pipeline object, so ``len(pipe)`` counts its own
commands, and its replies are its own. ``transaction=True`` makes a fill atomic: always so
when batched (the whole round trip is one transaction).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import redis
from redis.client import Pipeline
from redis.exceptions import NoScriptError

Fill = Callable[[Pipeline], None]

_STOP = object()


def execute_unchecked(pipe: Pipeline) -> list[Any]:
    """``pipe.execute()`` for a pipeline that is not a transaction, without the ``SCRIPT
    EXISTS`` round trip redis-py sends first whenever a pipeline holds a Lua script (one more
    round trip each time the scheduler works out a round's room, takes its slots and pops its
    queues). Outside a transaction each command stands alone, so a script the server does not
    know (Redis restarted empty, or its scripts flushed) fails only its own command: that one
    is loaded and run again by itself, as the check would have done ahead, and the others ran
    once. Raises the first error left, as ``execute`` does."""
    if pipe.transaction:
        raise ValueError("a transaction's scripts are checked before it runs: use execute()")
    scripts = {script.sha: script for script in pipe.scripts}
    stack = list(pipe.command_stack)
    pipe.scripts.clear()
    replies = pipe.execute(raise_on_error=False)
    for i, reply in enumerate(replies):
        if isinstance(reply, NoScriptError):
            _, sha, count, *rest = stack[i][0]  # EVALSHA sha numkeys keys... args...
            replies[i] = scripts[sha](keys=rest[:count], args=rest[count:])
    error = next((reply for reply in replies if isinstance(reply, Exception)), None)
    if error is not None:
        raise error
    return replies


class Pipelines:
    """One round trip per fill."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def run(self, fill: Fill, *, transaction: bool = False) -> list[Any]:
        """Run ``fill``'s commands; their replies. Raises the first command error, or the
        ``redis.RedisError`` that stopped the round trip."""
        with self._redis.pipeline(transaction=transaction) as pipe:
            fill(pipe)
            return pipe.execute()

    def close(self) -> None:
        """Nothing to stop (the same interface as :class:`BatchedPipelines`)."""


class BatchedPipelines(Pipelines):
    """Many threads' fills, one ``MULTI``/``EXEC`` per round trip, sent by one thread."""

    def __init__(self, client: redis.Redis, max_fills: int = 256) -> None:
        super().__init__(client)
        self._max_fills = max_fills
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="redis-batch", daemon=True)
        self._thread.start()

    def run(self, fill: Fill, *, transaction: bool = False) -> list[Any]:
        future: Future = Future()
        self._queue.put((fill, future))
        return future.result()

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=30)

    def _serve(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self._max_fills:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            try:
                self._send(batch)
            except Exception as exc:  # never leave a caller waiting on a dead thread
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            if stop:
                return

    def _send(self, batch: list[tuple[Fill, Future]]) -> None:
        merged = self._redis.pipeline(transaction=True)
        spans: list[tuple[Future, int, int]] = []
        for fill, future in batch:
            own = self._redis.pipeline(transaction=False)
            try:
                fill(own)
            except Exception as exc:  # a fill that fails to queue fails alone
                future.set_exception(exc)
                continue
            start = len(merged.command_stack)
            merged.command_stack.extend(own.command_stack)
            merged.scripts.update(own.scripts)
            spans.append((future, start, len(merged.command_stack)))
        try:
            replies = merged.execute(raise_on_error=False)
        except Exception as exc:  # the round trip failed: so did every fill in it
            for future, _, _ in spans:
                future.set_exception(exc)
            return
        finally:
            merged.reset()
        for future, start, end in spans:
            own_replies = replies[start:end]
            error = next((r for r in own_replies if isinstance(r, Exception)), None)
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(own_replies)
