"""The synchronous client: :class:`BrokerClient` and its :class:`Job`. Only I/O lives here."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
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


class BrokerClient(ClientBase):
    """Talks to the broker's HTTP API with ``httpx.Client``.

    ::

        with BrokerClient("http://localhost:8000", api_key) as client:
            job = client.submit_batch(requests, feature="summarization").wait(progress=True)
            for result in job.results():
                ...
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, timeout=timeout)
        self._http = httpx.Client(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> BrokerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, call: Call) -> httpx.Response:
        try:
            response = self._http.request(
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

    def _job(self, call: Call) -> Job:
        return Job(self, parse(self._send(call), JobOut))

    def submit_batch(
        self,
        requests: Iterable[RequestIn | Mapping[str, Any]],
        *,
        feature: str,
        priority: Priority | str = Priority.MEDIUM,
        webhook_url: str | None = None,
        webhook_events: Sequence[str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        completion_window: str | None = None,
    ) -> Job:
        """Submit a batch. Dicts are validated into :class:`RequestIn` before anything is sent;
        a bad one raises :class:`InvalidRequestError` naming the field."""
        call = submit_call(
            requests,
            feature=feature,
            priority=priority,
            webhook_url=webhook_url,
            webhook_events=webhook_events,
            metadata=metadata,
            completion_window=completion_window,
        )
        return self._job(call)

    def get_job(self, job_id: str) -> Job:
        return self._job(Call("GET", job_path(job_id)))

    def list_jobs(self, limit: int = 20, *, before: str | None = None) -> list[Job]:
        """One page of this team's jobs, newest first. For the next page pass
        ``before=jobs[-1].id``; a page shorter than ``limit`` is the last."""
        page = parse(self._send(list_jobs_call(limit, before)), JobList)
        return [Job(self, data) for data in page.data]

    def cancel(self, job_id: str) -> Job:
        return self._job(Call("POST", f"{job_path(job_id)}/cancel"))

    def results(self, job_id: str, page_size: int = 1000) -> Iterator[ResultOut]:
        """Every result of the job, in order, fetching ``page_size`` at a time (lazily)."""
        cursor = ResultsCursor(job_id, page_size)
        while not cursor.done:
            yield from cursor.advance(parse(self._send(cursor.call()), ResultsPage))

    def results_jsonl(self, job_id: str) -> Iterator[ResultOut]:
        """Every result of the job from the streamed JSON-lines form, in one response."""
        call = results_jsonl_call(job_id)
        try:
            with self._http.stream(
                call.method, call.path, params=call.params, headers=call.headers
            ) as response:
                if not response.is_success:
                    response.read()
                    raise_for_status(response)
                for line in response.iter_lines():
                    result = parse_result_line(line)
                    if result is not None:
                        yield result
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def route_report(self, *, team: str | None = None) -> RouteReportOut:
        """``GET /v1/reports/routes``: per route, team and feature, the tier mix, escalations
        and cost against the all-flagship counterfactual. A team's key gets its own team; the
        admin key every team, or ``team``'s."""
        return parse(self._send(route_report_call(team)), RouteReportOut)

    def health(self) -> dict[str, Any]:
        """``GET /healthz``: ``{"status": "ok", ...}``."""
        return parse_json_object(self._send(Call("GET", "/healthz")))


class Job(JobBase):
    """A submitted job: the last seen :class:`JobOut` (``.data``) and the client that made it."""

    def __init__(self, client: BrokerClient, data: JobOut) -> None:
        super().__init__(data)
        self._client = client

    def refresh(self) -> Job:
        """Fetch the job again; updates this object and returns it."""
        self.data = self._client.get_job(self.id).data
        return self

    def wait(
        self, *, progress: bool = False, timeout: float | None = None, poll_interval: float = 1.0
    ) -> Job:
        """Poll until the job is ``completed`` or ``cancelled``; returns this job.

        ``progress=True`` shows a progress bar on stderr. Raises :class:`JobTimeout` (carrying
        this job) after ``timeout`` seconds. A 429 while polling waits ``retry_after`` and goes on.
        """
        clock = WaitClock(timeout, poll_interval)
        retry_after: float | None = None
        with JobProgress(progress) as bar:
            while True:
                bar.update(self.data)
                if self.done:
                    return self
                time.sleep(clock.next_sleep(self, retry_after=retry_after))
                try:
                    self.refresh()
                    retry_after = None
                except RateLimitError as exc:
                    retry_after = exc.retry_after if exc.retry_after is not None else 1.0

    def cancel(self) -> Job:
        """Cancel the job; updates this object and returns it."""
        self.data = self._client.cancel(self.id).data
        return self

    def results(self, page_size: int = 1000) -> Iterator[ResultOut]:
        return self._client.results(self.id, page_size)

    def results_jsonl(self) -> Iterator[ResultOut]:
        return self._client.results_jsonl(self.id)
