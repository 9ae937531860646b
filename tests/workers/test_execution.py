"""One attempt end to end inside a worker: a real simulator, Redis and database.

A 429 must not fail the request: it goes back to the head of its queue with its age, the
provider is blocked for the ``retry-after`` it gave, and the fairness charge is taken back.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import select

from broker import redis_keys
from broker.config.broker_toml import load_config
from broker.config.resilience import RetryConfig
from broker.local.processes import start_simulator
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate
from broker.states import RequestStatus
from broker.store import Request, transitions
from broker.store.models import ProviderCall
from broker.submission import Submitter
from schedulers.ticket import Ticket
from workers.breakers import Breakers
from workers.execution import Executor
from workers.recorder import Recorder

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def one_rpm_simulator(tmp_path) -> Iterator[str]:
    """A fresh one per test: its window admits one request a minute."""
    child, url = start_simulator({"BROKER_SIM_RPM": "1"}, tmp_path)
    yield url
    child.stop()


def test_a_429_requeues_the_request_and_backs_off_the_provider(one_rpm_simulator, db, redis_client):
    base = load_config()
    config = base.with_providers(
        [p.model_copy(update={"base_url": one_rpm_simulator}) for p in base.providers]
    )
    body = JobCreate(
        feature="search",
        requests=[
            {
                "custom_id": f"r{i}",
                "model": "gpt-4o-mini",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"find {i}"}],
            }
            for i in range(2)
        ],
    )
    Submitter(db, redis_client, config).submit(config.team("product"), body)
    queue = redis_keys.team_queue("product", "medium")
    raw = redis_client.lpop(queue, 2)  # what the scheduler does, by hand
    entries = [QueueEntry.decode(e) for e in raw]
    db.write(lambda s: transitions.mark_dispatched(s, [e.request_id for e in entries]))
    tickets = [
        Ticket(e.request_id, 1, "product", "medium", "sim-openai", "gpt-4o-mini", e.encode(), 100.0)
        for e in entries
    ]
    redis_client.zadd(redis_keys.in_flight("sim-openai"), {t.request_id: 1 for t in tickets})

    recorder = Recorder(db)
    executor = Executor(config, recorder, redis_client)
    try:
        executor.run(tickets[0])  # the minute's one request
        executor.run(tickets[1])  # 429
    finally:
        executor.close()
        recorder.close()

    with db.session() as s:
        rows = {r.id: r for r in s.scalars(select(Request))}
    first, second = rows[tickets[0].request_id], rows[tickets[1].request_id]
    assert first.status == RequestStatus.SUCCEEDED
    assert second.status == RequestStatus.QUEUED and second.error_code is None
    assert redis_client.lrange(queue, 0, -1) == [raw[1]], "back at the head, same age"
    assert redis_client.zcard(redis_keys.in_flight("sim-openai")) == 0
    blocked_ms = redis_client.pttl(redis_keys.rate_blocked("provider:sim-openai"))
    assert 0 < blocked_ms <= 60_000, "blocked for the retry-after the provider sent"
    actual = first.input_tokens + 2 * first.output_tokens  # weights 1 and 2
    correction = float(redis_client.hget(redis_keys.fair_corrections(), "product"))
    assert correction == pytest.approx((actual - 100.0) + (0.0 - 100.0))
    assert float(redis_client.hget(redis_keys.service_received(), "product")) == actual


# --- failing providers: down the chain ----------------------------------------------------------


def outage_config(url: str):
    """The default catalog on this simulator, two tries per dispatch with tiny backoffs."""
    base = load_config()
    config = base.with_providers([p.model_copy(update={"base_url": url}) for p in base.providers])
    retries = RetryConfig(tries=2, backoff_s=0.001, max_backoff_s=0.002, max_retry_after_s=0.5)
    return config.model_copy(update={"retries": retries})


def submitted_tickets(db, redis_client, config, n: int, take: int = 1) -> list[Ticket]:
    """Submit ``n`` gpt-4o-mini requests for product and dispatch the first ``take`` by hand
    (attempt 1, on sim-openai), leaving the others queued behind them."""
    body = JobCreate(
        feature="search",
        requests=[
            {
                "custom_id": f"r{i}",
                "model": "gpt-4o-mini",
                "max_tokens": 8,
                "messages": [{"role": "user", "content": f"find {i}"}],
            }
            for i in range(n)
        ],
    )
    Submitter(db, redis_client, config).submit(config.team("product"), body)
    raw = redis_client.lpop(redis_keys.team_queue("product", "medium"), take)
    entries = [QueueEntry.decode(e) for e in raw]
    db.write(lambda s: transitions.mark_dispatched(s, [e.request_id for e in entries]))
    redis_client.zadd(redis_keys.in_flight("sim-openai"), {e.request_id: 1 for e in entries})
    return [
        Ticket(e.request_id, 1, "product", "medium", "sim-openai", "gpt-4o-mini", e.encode(), 100.0)
        for e in entries
    ]


def run_tickets(config, db, redis_client, *tickets: Ticket) -> None:
    recorder = Recorder(db)
    executor = Executor(config, recorder, redis_client)
    try:
        for ticket in tickets:
            executor.run(ticket)
    finally:
        executor.close()
        recorder.close()


def request_row(db, request_id: str) -> Request:
    with db.session() as s:
        return s.get(Request, request_id)


def calls_of(db, request_id: str) -> list[tuple]:
    with db.session() as s:
        rows = s.scalars(
            select(ProviderCall)
            .where(ProviderCall.request_id == request_id)
            .order_by(ProviderCall.attempt, ProviderCall.try_)
        )
        return [(c.attempt, c.try_, c.model, c.provider, c.outcome) for c in rows]


def sim_requests(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/_sim/stats").json()["requests"]["by_wire"]


@pytest.fixture
def openai_outage(tmp_path) -> Iterator[str]:
    child, url = start_simulator(
        {"BROKER_SIM_OUTAGES": '[{"duration_s": 60, "wire": "openai"}]'}, tmp_path
    )
    yield url
    child.stop()


def test_a_provider_failing_every_try_hands_the_request_down_its_chain(
    openai_outage, db, redis_client
):
    config = outage_config(openai_outage)
    (ticket,) = submitted_tickets(db, redis_client, config, n=2)
    queue = redis_keys.team_queue("product", "medium")
    behind = redis_client.lrange(queue, 0, -1)

    run_tickets(config, db, redis_client, ticket)

    row = request_row(db, ticket.request_id)
    assert (row.status, row.chain_index, row.failures, row.attempts) == (
        RequestStatus.QUEUED,
        1,
        1,
        1,
    )
    assert row.error_code is None
    assert calls_of(db, ticket.request_id) == [
        (1, 1, "gpt-4o-mini", "sim-openai", "provider_retryable"),
        (1, 2, "gpt-4o-mini", "sim-openai", "provider_retryable"),
    ]
    assert sim_requests(openai_outage)["openai"] == 2, "tries = 2 calls"
    head = QueueEntry.decode(redis_client.lindex(queue, 0))
    assert head == dataclasses.replace(ticket.queue_entry, chain_index=1), "same age, next model"
    assert redis_client.lrange(queue, 1, -1) == behind, "at the head, in front of the rest"
    assert redis_client.zcard(redis_keys.in_flight("sim-openai")) == 0
    correction = float(redis_client.hget(redis_keys.fair_corrections(), "product"))
    assert correction == pytest.approx(0.0 - 100.0), "not served: the charge is taken back"
    provider = {s.scope: s for s in Breakers(redis_client, config).states()}["provider:sim-openai"]
    assert (provider.state, provider.failures) == ("closed", 2)

    # The scheduler sends it on to claude-haiku-4-5 (sim-anthropic is up): it succeeds there.
    (again,) = db.write(lambda s: transitions.mark_dispatched(s, [ticket.request_id]))
    redis_client.lpop(queue)
    second = Ticket(
        ticket.request_id,
        again.attempt,
        "product",
        "medium",
        "sim-anthropic",
        "claude-haiku-4-5",
        head.encode(),
        100.0,
    )
    run_tickets(config, db, redis_client, second)
    row = request_row(db, ticket.request_id)
    assert (row.status, row.model_used, row.provider_used, row.attempts) == (
        RequestStatus.SUCCEEDED,
        "claude-haiku-4-5",
        "sim-anthropic",
        2,
    )
    assert calls_of(db, ticket.request_id) == [
        (1, 1, "gpt-4o-mini", "sim-openai", "provider_retryable"),
        (1, 2, "gpt-4o-mini", "sim-openai", "provider_retryable"),
        (2, 1, "claude-haiku-4-5", "sim-anthropic", "succeeded"),
    ]


@pytest.fixture
def quota_exhausted(tmp_path) -> Iterator[str]:
    child, url = start_simulator({"BROKER_SIM_QUOTA_EXHAUSTED": "true"}, tmp_path)
    yield url
    child.stop()


def test_an_exhausted_quota_opens_the_provider_breaker_at_once(quota_exhausted, db, redis_client):
    config = outage_config(quota_exhausted)
    first, second = submitted_tickets(db, redis_client, config, n=2, take=2)

    run_tickets(config, db, redis_client, first)

    breakers = Breakers(redis_client, config)
    states = {s.scope: s for s in breakers.states()}
    assert states["provider:sim-openai"].state == "open", "after one call, not min_calls"
    assert breakers.admit("sim-openai", "gpt-4o") == "provider:sim-openai"
    assert breakers.admit("sim-anthropic", "claude-haiku-4-5") is None
    assert calls_of(db, first.request_id) == [
        (1, 1, "gpt-4o-mini", "sim-openai", "provider_unavailable")
    ]
    row = request_row(db, first.request_id)
    assert (row.status, row.chain_index, row.failures) == (RequestStatus.QUEUED, 1, 1)

    # The next attempt on the provider makes no call and is not held against the request.
    run_tickets(config, db, redis_client, second)
    assert sim_requests(quota_exhausted)["openai"] == 1
    assert calls_of(db, second.request_id) == []
    row = request_row(db, second.request_id)
    assert (row.status, row.chain_index, row.failures) == (RequestStatus.QUEUED, 1, 0)
    heads = [
        QueueEntry.decode(e)
        for e in redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1)
    ]
    assert [(e.request_id, e.chain_index) for e in heads] == [
        (second.request_id, 1),
        (first.request_id, 1),
    ]
    assert redis_client.zcard(redis_keys.in_flight("sim-openai")) == 0


def test_a_ticket_from_a_stale_line_calls_nothing_and_requeues_on_the_current_model(
    db, redis_client
):
    """A cascade escalated the request to gpt-4o while a line for its old tier outlived the
    escalation in the team queue (the scheduler pops after it dispatches): the ticket made
    from that line must not run on the old tier."""
    config = outage_config("http://127.0.0.1:9")  # nothing listens: any call would fail
    (ticket,) = submitted_tickets(db, redis_client, config, 1)
    db.write(
        lambda s: s.execute(
            transitions.update(Request)
            .where(Request.id == ticket.request_id)
            .values(model="gpt-4o")
        )
    )
    run_tickets(config, db, redis_client, ticket)
    with db.session() as s:
        row = s.get(Request, ticket.request_id)
        calls = s.scalars(select(ProviderCall).where(ProviderCall.request_id == row.id)).all()
    assert (row.status, row.model, calls) == (RequestStatus.QUEUED, "gpt-4o", [])
    (line,) = redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1)
    assert QueueEntry.decode(line).model == "gpt-4o"
    assert redis_client.zcard(redis_keys.in_flight("sim-openai")) == 0


# --- several tickets in one message ---------------------------------------------------------


@pytest.fixture
def slow_simulator(tmp_path) -> Iterator[str]:
    """Every answer takes 0.3 s, so attempts running side by side overlap."""
    child, url = start_simulator(
        {"BROKER_SIM_LATENCY_MS": "300", "BROKER_SIM_LATENCY_SIGMA": "0"}, tmp_path
    )
    yield url
    child.stop()


def test_a_several_ticket_message_runs_its_attempts_side_by_side_and_skips_ended_ones(
    slow_simulator, db, redis_client
):
    """A redelivered message holds attempts that already ended: those are claimed by nobody
    and call nothing; the others run at once, not one after another."""
    config = outage_config(slow_simulator)
    tickets = submitted_tickets(db, redis_client, config, 4, take=4)
    run_tickets(config, db, redis_client, tickets[0])  # ended before the message came again
    before = sum(sim_requests(slow_simulator).values())
    recorder = Recorder(db)
    executor = Executor(config, recorder, redis_client, calls_in_flight=8)
    running, most = [0], [0]
    lock = threading.Lock()
    call = executor._attempts.run

    def counted(*args):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        try:
            return call(*args)
        finally:
            with lock:
                running[0] -= 1

    executor._attempts.run = counted
    try:
        executor.run_many(tickets)
    finally:
        executor.close()
        recorder.close()
    assert sum(sim_requests(slow_simulator).values()) - before == 3, "the ended one called nothing"
    assert {request_row(db, t.request_id).status for t in tickets} == {RequestStatus.SUCCEEDED}
    assert most[0] == 3, "the three calls were in flight together"
    assert redis_client.zcard(redis_keys.in_flight("sim-openai")) == 0
