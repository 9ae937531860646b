"""One interactive request through the queues, waited for while the caller's connection waits.

The request is a one-request job at ``high`` priority (the ``x-broker-priority`` header may say
otherwise): fair scheduling, budgets, routes, the cache, fallback and attribution apply as to
any batch. The answer is waited for on a Redis pattern subscription the worker publishes to
when it records an ended attempt (:func:`broker.redis_keys.request_ended`), with the database
read every ``poll_s`` as the backstop for requests that end elsewhere (a cache hit found at
dispatch, a budget refusal, an expiry) or a message that was missed: the database is the record.

A streamed call (:meth:`Interactive.stream`) marks its request ``streamed`` and waits on the
request's deltas (:mod:`broker.deltas`) instead: the first text starts the answer
(:class:`~broker.dropin.live.Live`), and a request that ends before writing any (a cache hit,
a refusal) is answered from its row, as without streaming.

A caller that goes away while its request is still queued cancels it; one already running
finishes and is recorded (and charged), as in a batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import redis
import redis.asyncio as aioredis
from starlette.concurrency import run_in_threadpool

from broker import redis_keys
from broker.config.broker_toml import TeamConfig
from broker.deltas import Delta, DeltaReader
from broker.dropin.live import Live
from broker.dropin.wire import TRACE_HEADER, feature_of
from broker.errors import InvalidRequest
from broker.ids import new_job_id, request_id
from broker.schemas.http import JobCreate, Priority, RequestIn
from broker.states import JobStatus, RequestStatus
from broker.store import Database, Request, transitions
from broker.submission import Submitter

log = logging.getLogger(__name__)

PRIORITY_HEADER = "x-broker-priority"
COMPLETION_WINDOW = "10m"
"""An interactive request not started within this ends as expired (the caller gets a 504)."""
TERMINAL = {s.value for s in RequestStatus if s.is_terminal}
T = TypeVar("T")


class ClientGone(Exception):
    """The caller disconnected while its request was waiting."""


class Listener:
    """The API process's one subscription to ended requests; wakes the waiter of each."""

    def __init__(self, url: str) -> None:
        self._client = aioredis.Redis.from_url(url)
        self._waiters: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task | None = None

    @property
    def client(self) -> aioredis.Redis:
        return self._client

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        await self._client.aclose()

    def register(self, request_id: str) -> asyncio.Event:
        return self._waiters.setdefault(request_id, asyncio.Event())

    def unregister(self, request_id: str) -> None:
        self._waiters.pop(request_id, None)

    async def _run(self) -> None:
        pattern = redis_keys.request_ended("*")
        prefix = len(pattern) - 1
        while True:
            try:
                async with self._client.pubsub() as pubsub:
                    await pubsub.psubscribe(pattern)
                    async for message in pubsub.listen():
                        if message.get("type") != "pmessage":
                            continue
                        event = self._waiters.get(message["channel"].decode()[prefix:])
                        if event is not None:
                            event.set()
            except asyncio.CancelledError:
                raise
            except (redis.RedisError, OSError) as exc:  # waiters poll meanwhile
                log.warning("ended-request subscription lost (%s); again in 1 s", exc)
                await asyncio.sleep(1)


@dataclass(frozen=True)
class Interactive:
    submitter: Submitter
    db: Database
    listener: Listener
    poll_s: float = 0.1
    wait_s: float = 600.0

    async def run(
        self,
        team: TeamConfig,
        request: RequestIn,
        headers: Mapping[str, str],
        is_disconnected: Callable[[], Awaitable[bool]],
    ) -> Request:
        """Submit ``request`` and return its row once it has ended (any terminal state)."""
        job_id = new_job_id()
        rid = request_id(job_id, 0)
        event = self.listener.register(rid)  # before the request exists: its end is not missed
        try:
            ended = await self._submit(job_id, team, request, headers, streamed=False)
            return await self._wait(
                job_id, rid, is_disconnected, lambda: self._woken(event), look_first=ended
            )
        finally:
            self.listener.unregister(rid)

    async def stream(
        self,
        team: TeamConfig,
        request: RequestIn,
        headers: Mapping[str, str],
        is_disconnected: Callable[[], Awaitable[bool]],
    ) -> Request | Live:
        """Submit ``request`` as streamed: its row if it ended before any of its text was
        written (a cache hit, a refusal, a failure), else its answer as it is written."""
        job_id = new_job_id()
        rid = request_id(job_id, 0)
        ended = await self._submit(job_id, team, request, headers, streamed=True)
        reader = DeltaReader(self.listener.client, rid)
        block_ms = max(1, int(self.poll_s * 1000))

        async def written() -> list[Delta] | None:
            found = await reader.read(block_ms)
            # An end mark alone: the row has ended, and the next look finds it.
            return found if any(not d.ended for d in found) else None

        try:
            first = await self._wait(job_id, rid, is_disconnected, written, look_first=ended)
        except BaseException:
            await reader.discard()
            raise
        if isinstance(first, Request):
            await reader.discard()
            return first
        return Live(rid, reader, first, lambda: run_in_threadpool(self._ended, rid), block_ms)

    async def _submit(
        self,
        job_id: str,
        team: TeamConfig,
        request: RequestIn,
        headers: Mapping[str, str],
        streamed: bool,
    ) -> bool:
        """Submit the one-request job ``job_id``; whether it ended at once (its answer was in
        the cache)."""
        priority = headers.get(PRIORITY_HEADER, Priority.HIGH.value)
        if priority not in {p.value for p in Priority}:
            raise InvalidRequest(
                f"{PRIORITY_HEADER}: one of high, medium, low (not {priority!r})",
                field=PRIORITY_HEADER,
            )
        if headers.get(TRACE_HEADER) and request.trace_id is None:
            request = request.model_copy(update={"trace_id": headers[TRACE_HEADER]})
        batch = JobCreate(
            feature=feature_of(headers, request.metadata),
            priority=Priority(priority),
            completion_window=COMPLETION_WINDOW,
            requests=[request],
        )
        # Not counted against the key's submissions_per_minute, a limit on creating batches:
        # an interactive call is bounded by budgets, trace ceilings and provider limits.
        try:
            job = await run_in_threadpool(
                partial(self.submitter.submit, streamed=streamed, job_id=job_id), team, batch
            )
        except InvalidRequest as exc:  # one request, not a batch: named as the caller wrote it
            field = (exc.field or "").removeprefix("requests[0].") or None
            raise type(exc)(exc.message.replace(" at requests[0]", ""), field=field) from exc
        return JobStatus(job.status).is_terminal

    async def _wait(
        self,
        job_id: str,
        rid: str,
        is_disconnected: Callable[[], Awaitable[bool]],
        pause: Callable[[], Awaitable[T | None]],
        *,
        look_first: bool,
    ) -> Request | T:
        """The row once it has ended, or what ``pause`` returned first: it is awaited before
        each look at the database and returns None when it found nothing. ``look_first``: look
        before the first pause (a request just queued cannot have ended, so a look then is a
        read on the answer's path for nothing; the pause wakes when it ends)."""
        deadline: float | None = asyncio.get_running_loop().time() + self.wait_s
        while True:
            if look_first:
                row = await run_in_threadpool(self._ended, rid)
                if row is not None:
                    return row
            look_first = True
            found = await pause()
            if found is not None:
                return found
            if await is_disconnected():
                await run_in_threadpool(self._cancel, job_id)
                raise ClientGone(rid)
            if deadline is not None and asyncio.get_running_loop().time() > deadline:
                await run_in_threadpool(self._cancel, job_id)  # it ends as cancelled
                deadline = None

    async def _woken(self, event: asyncio.Event) -> None:
        """Until the request's end is announced, or ``poll_s`` has passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.poll_s)
        event.clear()

    def _ended(self, request_id: str) -> Request | None:
        with self.db.session() as session:
            row = session.get(Request, request_id)
            if row is None or row.status not in TERMINAL:
                return None
            session.expunge(row)
            return row

    def _cancel(self, job_id: str) -> None:
        """Cancel what has not started; a running attempt finishes and is recorded."""
        self.db.write(lambda session: transitions.cancel_job(session, job_id))
