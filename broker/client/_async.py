"""The asynchronous client: :class:`AsyncBrokerClient` and its :class:`AsyncJob`. Only I/O here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import httpx

from broker.client._base import (
    Call,
    ClientBase,
    JobBase,
    ResultsCursor,
    WaitClock,
    job_path,
    list_jobs_call,
    parse,
    parse_json_object,
    parse_result_line,
    raise_for_status,
    results_jsonl_call,
    route_report_call,
    submit_call,
)
from broker.client._errors import RateLimitError
from broker.client._progress import JobProgress
from broker.schemas.http import JobList, JobOut, RequestIn, ResultOut, ResultsPage
from broker.schemas.reports import RouteReportOut
from broker.states import Priority


class AsyncBrokerClient(ClientBase):
    """:class:`BrokerClient` with ``httpx.AsyncClient``: the same methods, awaited.

    ``results`` and ``results_jsonl`` are async iterators (``async for``).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncBrokerClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        try:
            response = await self._http.request(
                call.method,
                call.path,
                params=call.params,
                content=call.content,
                headers=call.headers,
            )
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        raise_for_status(response)
        return response

    async def _job(self, call: Call) -> AsyncJob:
        return AsyncJob(self, parse(await self._send(call), JobOut))

    async def submit_batch(
        self,
        requests: Iterable[RequestIn | Mapping[str, Any]],
        *,
        feature: str,
        priority: Priority | str = Priority.MEDIUM,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        completion_window: str | None = None,
    ) -> AsyncJob:
        """See :meth:`BrokerClient.submit_batch`."""
        call = submit_call(
            requests,
            feature=feature,
            priority=priority,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            metadata=metadata,
            completion_window=completion_window,
        )
        return await self._job(call)

    async def get_job(self, job_id: str) -> AsyncJob:
        return await self._job(Call("GET", job_path(job_id)))

    async def list_jobs(self, limit: int = 20, *, before: str | None = None) -> list[AsyncJob]:
        """See :meth:`BrokerClient.list_jobs`."""
        page = parse(await self._send(list_jobs_call(limit, before)), JobList)
        return [AsyncJob(self, data) for data in page.data]

    async def cancel(self, job_id: str) -> AsyncJob:
        return await self._job(Call("POST", f"{job_path(job_id)}/cancel"))

    async def results(self, job_id: str, page_size: int = 1000) -> AsyncIterator[ResultOut]:
        """Every result of the job, in order, fetching ``page_size`` at a time."""
        cursor = ResultsCursor(job_id, page_size)
        while not cursor.done:
            for result in cursor.advance(parse(await self._send(cursor.call()), ResultsPage)):
                yield result

    async def results_jsonl(self, job_id: str) -> AsyncIterator[ResultOut]:
        """Every result of the job from the streamed JSON-lines form, in one response."""
        call = results_jsonl_call(job_id)
        try:
            async with self._http.stream(
                call.method, call.path, params=call.params, headers=call.headers
            ) as response:
                if not response.is_success:
                    await response.aread()
                    raise_for_status(response)
                async for line in response.aiter_lines():
                    result = parse_result_line(line)
                    if result is not None:
                        yield result
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    async def route_report(self, *, team: str | None = None) -> RouteReportOut:
        """``GET /v1/reports/routes``: per route, team and feature, the tier mix, escalations
        and cost against the all-flagship counterfactual. A team's key gets its own team; the
        admin key every team, or ``team``'s."""
        return parse(await self._send(route_report_call(team)), RouteReportOut)

    async def health(self) -> dict[str, Any]:
        return parse_json_object(await self._send(Call("GET", "/healthz")))


class AsyncJob(JobBase):
    """:class:`Job` for :class:`AsyncBrokerClient`: ``refresh``, ``wait`` and ``cancel`` are
    awaited; ``results`` and ``results_jsonl`` are async iterators."""

    def __init__(self, client: AsyncBrokerClient, data: JobOut) -> None:
        super().__init__(data)
        self._client = client

    async def refresh(self) -> AsyncJob:
        self.data = (await self._client.get_job(self.id)).data
        return self

    async def wait(
        self, *, progress: bool = False, timeout: float | None = None, poll_interval: float = 1.0
    ) -> AsyncJob:
        """See :meth:`Job.wait`."""
        clock = WaitClock(timeout, poll_interval)
        retry_after: float | None = None
        with JobProgress(progress) as bar:
            while True:
                bar.update(self.data)
                if self.done:
                    return self
                await asyncio.sleep(clock.next_sleep(self, retry_after=retry_after))
                try:
                    await self.refresh()
                    retry_after = None
                except RateLimitError as exc:
                    retry_after = exc.retry_after if exc.retry_after is not None else 1.0

    async def cancel(self) -> AsyncJob:
        self.data = (await self._client.cancel(self.id)).data
        return self

    def results(self, page_size: int = 1000) -> AsyncIterator[ResultOut]:
        return self._client.results(self.id, page_size)

    def results_jsonl(self) -> AsyncIterator[ResultOut]:
        return self._client.results_jsonl(self.id)
