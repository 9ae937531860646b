"""broker.client against an in-memory fake of the HTTP API contract (httpx.MockTransport).

End-to-end tests against the real server live in tests/e2e.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import broker.client
from broker.client import (
    AsyncBrokerClient,
    AsyncJob,
    AuthenticationError,
    BrokerAPIError,
    BrokerClient,
    InvalidRequestError,
    Job,
    JobTimeout,
    NotFoundError,
    PayloadTooLargeError,
    RateLimitError,
    RequestIn,
    ResultOut,
    ServerError,
)
from broker.errors import BrokerError

API_KEY = "sk-team-a"
BASE = "http://broker.test"


def make_requests(n: int) -> list[dict[str, Any]]:
    return [
        {"custom_id": f"r{i}", "model": "sim-small", "messages": [{"role": "user", "content": "x"}]}
        for i in range(n)
    ]


def error(status: int, type_: str, message: str, field: str | None = None, **kw) -> httpx.Response:
    body = {"error": {"type": type_, "message": message, "field": field}}
    return httpx.Response(status, json=body, **kw)


class FakeBroker:
    """The API contract in memory. Each GET of a job advances it along ``script``."""

    def __init__(self, script: tuple[str, ...] = ("queued", "running", "completed")) -> None:
        self.script = script
        self.jobs: dict[str, dict[str, Any]] = {}
        self.order: list[str] = []
        self.seen: list[httpx.Request] = []
        self.queued_responses: list[httpx.Response] = []

    # -- the handler given to httpx.MockTransport --------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path == "/healthz":
            return httpx.Response(200, json={"status": "ok", "version": "test"})
        if request.headers.get("authorization") != f"Bearer {API_KEY}":
            return error(401, "authentication_failed", "unknown API key")
        if self.queued_responses:
            return self.queued_responses.pop(0)
        parts = request.url.path.strip("/").split("/")  # v1 jobs [id [results|cancel]]
        params = request.url.params
        if parts == ["v1", "jobs"] and request.method == "POST":
            return self.create(json.loads(request.content))
        if parts == ["v1", "jobs"]:
            return self.list(int(params.get("limit", 20)), params.get("before"))
        if parts == ["v1", "reports", "routes"]:
            return self.route_report(params.get("team"))
        job = self.jobs.get(parts[2]) if len(parts) >= 3 else None
        if job is None:
            return error(404, "not_found", f"no job {parts[2] if len(parts) > 2 else ''}")
        if len(parts) == 3:
            job["step"] = min(job["step"] + 1, len(self.script) - 1)
            return httpx.Response(200, json=self.job_out(job))
        if parts[3] == "cancel":
            job["cancelled"] = True
            return httpx.Response(200, json=self.job_out(job))
        if params.get("format") == "jsonl":
            lines = "".join(json.dumps(r) + "\n" for r in job["results"])
            return httpx.Response(
                200, content=lines.encode(), headers={"content-type": "application/x-ndjson"}
            )
        return self.results_page(job, int(params.get("after", 0)), int(params["limit"]))

    # -- endpoints ---------------------------------------------------------------------------

    def route_report(self, team: str | None) -> httpx.Response:
        if team not in (None, "team-a"):
            return error(404, "not_found", f"no team '{team}' for this key")
        row = {
            "route": "auto", "team": "team-a", "feature": "search", "requests": 4,
            "by_tier": {"0": 3, "1": 1}, "by_model": {"sim-small": 3, "sim-large": 1},
            "escalated": 1, "escalation_rate": 0.25, "cache_hits": 0, "cost_micros": 400,
            "flagship_cost_micros": 900, "saved_vs_flagship": 0.5556,
        }  # fmt: skip
        return httpx.Response(200, json={"routes": [row]})

    def create(self, body: dict[str, Any]) -> httpx.Response:
        job_id = f"job_{len(self.jobs) + 1}"
        results = [
            {
                "id": f"req_{seq}",
                "custom_id": r["custom_id"],
                "status": "failed" if seq == 1 else "succeeded",
                "model": r["model"],
                "output": None if seq == 1 else f"out {seq}",
                "attempts": 1,
                "error": {"code": "provider_rejected", "message": "no"} if seq == 1 else None,
            }
            for seq, r in enumerate(body["requests"], start=1)
        ]
        job = {"id": job_id, "body": body, "results": results, "step": 0, "cancelled": False}
        self.jobs[job_id] = job
        self.order.append(job_id)
        return httpx.Response(201, json=self.job_out(job))

    def list(self, limit: int, before: str | None) -> httpx.Response:
        newest_first = self.order[::-1]
        if before is not None:
            newest_first = newest_first[newest_first.index(before) + 1 :]
        page = newest_first[:limit]
        data = [self.job_out(self.jobs[j]) for j in page]
        return httpx.Response(200, json={"data": data, "has_more": len(newest_first) > limit})

    def results_page(self, job: dict[str, Any], after: int, limit: int) -> httpx.Response:
        rows = job["results"][after : after + limit]
        has_more = after + limit < len(job["results"])
        body = {"data": rows, "has_more": has_more, "next_after": after + len(rows)}
        return httpx.Response(200, json=body)

    def job_out(self, job: dict[str, Any]) -> dict[str, Any]:
        total = len(job["results"])
        status = self.script[job["step"]]
        done = {"queued": 0, "running": total // 2}.get(status, total)
        if job["cancelled"]:
            status = "cancelled"
        failed = min(done, 1)
        return {
            "id": job["id"],
            "team": "team-a",
            "feature": job["body"]["feature"],
            "priority": job["body"]["priority"],
            "status": status,
            "counts": {
                "total": total,
                "pending": 0 if job["cancelled"] else total - done,
                "succeeded": done - failed,
                "failed": failed,
                "cancelled": total - done if job["cancelled"] else 0,
                "expired": 0,
            },
            "usage": {"input_tokens": 10 * done, "output_tokens": 5 * done},
            "cost_micros": 1500 * done,
            "cost_usd": f"{1500 * done / 1e6:.6f}",
            "created_at": datetime(2025, 1, 1, tzinfo=UTC).isoformat(),
        }


@pytest.fixture
def fake() -> FakeBroker:
    return FakeBroker()


@pytest.fixture
def client(fake: FakeBroker):
    with BrokerClient(BASE, API_KEY, transport=httpx.MockTransport(fake)) as c:
        yield c


def test_public_names_are_pinned():
    assert broker.client.__all__ == [
        "BrokerClient",
        "AsyncBrokerClient",
        "Job",
        "AsyncJob",
        "RequestIn",
        "Message",
        "JobOut",
        "ResultOut",
        "BrokerAPIError",
        "AuthenticationError",
        "NotFoundError",
        "InvalidRequestError",
        "PayloadTooLargeError",
        "RateLimitError",
        "ServerError",
        "JobTimeout",
        "WebhookVerificationError",
        "verify_webhook",
    ]
    for name in broker.client.__all__:
        assert getattr(broker.client, name) is not None
    assert broker.client.RequestIn is broker.schemas.http.RequestIn  # reused, not redefined


def test_submit_and_wait_until_completed(client: BrokerClient, fake: FakeBroker):
    job = client.submit_batch(
        [*make_requests(3), RequestIn.model_validate(make_requests(1)[0] | {"custom_id": "x"})],
        feature="summarization",
        priority="high",
        metadata={"run": 7},
    )
    assert isinstance(job, Job) and job.status == "queued" and job.counts.total == 4
    sent = json.loads(fake.seen[0].content)
    assert sent["feature"] == "summarization" and sent["priority"] == "high"
    assert sent["metadata"] == {"run": 7} and len(sent["requests"]) == 4
    assert fake.seen[0].headers["authorization"] == f"Bearer {API_KEY}"

    assert job.wait(poll_interval=0) is job
    assert job.status == "completed" and job.done
    assert (job.counts.succeeded, job.counts.failed, job.counts.pending) == (3, 1, 0)
    assert job.cost_micros == 6000 and job.cost_usd == "0.006000"
    assert [r.method for r in fake.seen].count("GET") == 2  # queued -> running -> completed


def test_wait_with_progress_bar_off_a_terminal(client: BrokerClient, capsys):
    job = client.submit_batch(make_requests(5), feature="summarization")
    job.wait(progress=True, poll_interval=0)
    assert job.done
    assert "5/5" in capsys.readouterr().err


def test_wait_rides_out_a_rate_limit_while_polling(client: BrokerClient, fake: FakeBroker):
    job = client.submit_batch(make_requests(2), feature="search")
    fake.queued_responses.append(
        error(429, "rate_limited", "slow down", headers={"retry-after": "0"})
    )
    assert job.wait(poll_interval=0, timeout=5).status == "completed"


def test_wait_times_out_with_the_last_seen_job(fake: FakeBroker):
    fake.script = ("queued", "running")
    with BrokerClient(BASE, API_KEY, transport=httpx.MockTransport(fake)) as client:
        job = client.submit_batch(make_requests(4), feature="search")
        with pytest.raises(JobTimeout) as info:
            job.wait(timeout=0.05, poll_interval=0.01)
    assert isinstance(info.value, BrokerError)
    assert info.value.job is job and info.value.job.status == "running"
    assert "job_1 is still running" in str(info.value) and "2/4" in str(info.value)


def test_results_iterates_all_pages(client: BrokerClient, fake: FakeBroker):
    job = client.submit_batch(make_requests(7), feature="classification")
    results = list(job.results(page_size=3))
    assert [r.custom_id for r in results] == [f"r{i}" for i in range(7)]
    assert all(isinstance(r, ResultOut) for r in results)
    pages = [r.url.params for r in fake.seen if r.url.path.endswith("/results")]
    assert [p.get("after") for p in pages] == [None, "3", "6"]
    assert {p["limit"] for p in pages} == {"3"}


def test_results_jsonl_streams_every_result(client: BrokerClient, fake: FakeBroker):
    job = client.submit_batch(make_requests(5), feature="translation")
    results = list(job.results_jsonl())
    assert [r.custom_id for r in results] == [f"r{i}" for i in range(5)]
    assert results[0].status == "failed" and results[0].error.code == "provider_rejected"
    assert fake.seen[-1].headers["accept"] == "application/x-ndjson"
    with pytest.raises(NotFoundError):
        list(client.results_jsonl("job_missing"))


def test_cancel(client: BrokerClient):
    job = client.submit_batch(make_requests(3), feature="chatbot")
    assert job.cancel() is job
    assert job.status == "cancelled" and job.done and job.counts.cancelled == 3
    assert client.cancel(job.id).status == "cancelled"


def test_get_job_list_jobs_and_health(client: BrokerClient):
    ids = [client.submit_batch(make_requests(1), feature="search").id for _ in range(3)]
    assert client.get_job(ids[0]).id == ids[0]
    first = client.list_jobs(limit=2)
    assert [j.id for j in first] == ids[::-1][:2]
    assert [j.id for j in client.list_jobs(limit=2, before=first[-1].id)] == [ids[0]]
    assert client.health()["status"] == "ok"


def test_route_report(client: BrokerClient, fake: FakeBroker):
    report = client.route_report()
    (row,) = report.routes
    assert (row.route, row.requests, row.escalated, row.flagship_cost_micros) == ("auto", 4, 1, 900)
    assert row.by_model == {"sim-small": 3, "sim-large": 1}
    assert "team" not in fake.seen[-1].url.params
    assert client.route_report(team="team-a").routes == report.routes
    assert fake.seen[-1].url.params["team"] == "team-a"
    with pytest.raises(NotFoundError, match="no team 'team-b'"):
        client.route_report(team="team-b")


def test_async_route_report(fake: FakeBroker):
    async def scenario() -> None:
        async with AsyncBrokerClient(BASE, API_KEY, transport=httpx.MockTransport(fake)) as c:
            (row,) = (await c.route_report(team="team-a")).routes
            assert (row.team, row.saved_vs_flagship) == ("team-a", 0.5556)
            with pytest.raises(NotFoundError):
                await c.route_report(team="team-b")

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, InvalidRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (413, PayloadTooLargeError),
        (422, InvalidRequestError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
    ],
)
def test_error_status_maps_to_class(client: BrokerClient, fake, status: int, cls: type):
    fake.queued_responses.append(error(status, "some_type", "the server says no", "requests.0"))
    with pytest.raises(cls) as info:
        client.get_job("job_1")
    exc = info.value
    assert isinstance(exc, BrokerAPIError) and isinstance(exc, BrokerError)
    assert str(exc) == "the server says no"
    assert (exc.status_code, exc.type, exc.field) == (status, "some_type", "requests.0")


def test_wrong_api_key_is_an_authentication_error(fake: FakeBroker):
    with BrokerClient(BASE, "sk-wrong", transport=httpx.MockTransport(fake)) as client:
        with pytest.raises(AuthenticationError, match="unknown API key"):
            client.list_jobs()


def test_rate_limit_carries_retry_after(client: BrokerClient, fake: FakeBroker):
    fake.queued_responses.append(
        error(429, "rate_limited", "too many requests", headers={"retry-after": "7"})
    )
    with pytest.raises(RateLimitError) as info:
        client.submit_batch(make_requests(1), feature="search")
    assert info.value.retry_after == 7.0 and info.value.status_code == 429


def test_non_json_502_becomes_server_error(client: BrokerClient, fake: FakeBroker):
    html = (
        "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
        "</h1></center><hr><center>nginx</center></body></html>"
    )
    fake.queued_responses.append(httpx.Response(502, text=html))
    with pytest.raises(ServerError) as info:
        client.get_job("job_1")
    message = str(info.value)
    assert info.value.status_code == 502
    assert "502 Bad Gateway" in message and "nginx" in message and "<" not in message
    assert f"{BASE}/v1/jobs/job_1" in message


def test_unreachable_server():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with BrokerClient(BASE, API_KEY, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(BrokerAPIError) as info:
            client.get_job("job_1")
    assert type(info.value) is BrokerAPIError and info.value.status_code is None
    assert str(info.value).startswith(f"cannot reach the broker at {BASE}")
    assert isinstance(info.value.__cause__, httpx.ConnectError)


def test_unreachable_real_socket():
    with BrokerClient("http://127.0.0.1:1", API_KEY, timeout=2) as client:
        with pytest.raises(BrokerAPIError, match=r"cannot reach the broker at http://127\.0\.0\.1"):
            client.health()


NO_MESSAGES = {"custom_id": "r1", "model": "m", "messages": []}
BAD_ROLE = {"custom_id": "r0", "model": "m", "messages": [{"role": "bot", "content": "x"}]}


@pytest.mark.parametrize(
    ("requests", "kwargs", "field"),
    [
        ([*make_requests(1), NO_MESSAGES], {}, "requests[1].messages"),
        ([BAD_ROLE], {}, "requests[0].messages[0].role"),
        (make_requests(1), {"feature": "Not A Feature"}, "feature"),
        (make_requests(1), {"priority": "urgent"}, "priority"),
    ],
)
def test_client_side_validation_before_any_request(fake, requests, kwargs, field):
    with BrokerClient(BASE, API_KEY, transport=httpx.MockTransport(fake)) as client:
        with pytest.raises(InvalidRequestError) as info:
            client.submit_batch(requests, **({"feature": "search"} | kwargs))
    assert fake.seen == []
    assert info.value.field == field and info.value.status_code is None
    assert "validation error" in str(info.value)  # pydantic's own message


def test_async_client_submit_wait_results(fake: FakeBroker):
    async def scenario() -> None:
        transport = httpx.MockTransport(fake)
        async with AsyncBrokerClient(BASE, API_KEY, transport=transport) as client:
            job = await client.submit_batch(make_requests(5), feature="summarization")
            assert isinstance(job, AsyncJob) and job.status == "queued"
            assert await job.wait(poll_interval=0, progress=True) is job
            assert job.status == "completed" and job.counts.succeeded == 4
            paged = [r.custom_id async for r in job.results(page_size=2)]
            streamed = [r.custom_id async for r in job.results_jsonl()]
            assert paged == streamed == [f"r{i}" for i in range(5)]
            assert [j.id for j in await client.list_jobs()] == [job.id]
            assert (await client.health())["status"] == "ok"
            with pytest.raises(NotFoundError):
                await client.get_job("job_missing")
            assert (await (await client.get_job(job.id)).cancel()).status == "cancelled"

    asyncio.run(scenario())


def test_async_client_timeout_and_unreachable(fake: FakeBroker):
    fake.script = ("queued",)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def scenario() -> None:
        async with AsyncBrokerClient(BASE, API_KEY, transport=httpx.MockTransport(fake)) as c:
            job = await c.submit_batch(make_requests(2), feature="search")
            with pytest.raises(JobTimeout) as info:
                await job.wait(timeout=0.03, poll_interval=0.01)
            assert info.value.job is job
        async with AsyncBrokerClient(BASE, API_KEY, transport=httpx.MockTransport(refuse)) as c:
            with pytest.raises(BrokerAPIError, match="cannot reach the broker"):
                await c.get_job("job_1")
            with pytest.raises(BrokerAPIError, match="cannot reach the broker"):
                [r async for r in c.results_jsonl("job_1")]

    asyncio.run(scenario())


def test_a_submitted_batch_carries_only_what_was_set_and_reads_back_the_same() -> None:
    from broker.client._base import submit_call
    from broker.schemas.http import JobCreate

    requests = [
        {"custom_id": "a", "model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]},
        {
            "custom_id": "b",
            "model": "gpt-4o",
            "max_tokens": 5,
            "temperature": 0,
            "stop": "END",
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "x"},
            ],
        },
        {"custom_id": "c", "model": "text-embedding-3-small", "input": ["one", "two"]},
    ]
    call = submit_call(
        requests, feature="chatbot", priority="high", webhook_url=None, metadata={"k": "v"}
    )
    sent = json.loads(call.content)
    assert call.headers == {"content-type": "application/json"}
    assert sent["requests"][0] == requests[0]  # no nulls, no defaults: what the caller gave
    assert "webhook_events" not in sent and "completion_window" not in sent
    # The server, applying its defaults, reads the same batch the client validated.
    assert JobCreate.model_validate_json(call.content) == JobCreate.model_validate(
        {"feature": "chatbot", "priority": "high", "metadata": {"k": "v"}, "requests": requests}
    )
