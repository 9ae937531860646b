"""One attempt end to end inside a worker: a real simulator, Redis and database.

A 429 must not fail the request: it goes back to the head of its queue with its age, the
provider is blocked for the ``retry-after`` it gave, and the fairness charge is taken back.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from broker import keys
from broker.config import load_config
from broker.processes import start_simulator
from broker.queues import QueueEntry
from broker.schemas import JobCreate
from broker.states import RequestStatus
from broker.store import Request, transitions
from broker.submission import Submitter
from schedulers.ticket import Ticket
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
    queue = keys.team_queue("product", "medium")
    raw = redis_client.lpop(queue, 2)  # what the scheduler does, by hand
    entries = [QueueEntry.decode(e) for e in raw]
    db.write(lambda s: transitions.mark_dispatched(s, [e.request_id for e in entries]))
    tickets = [
        Ticket(e.request_id, 1, "product", "medium", "sim-openai", "gpt-4o-mini", e.encode(), 100.0)
        for e in entries
    ]
    redis_client.zadd(keys.in_flight("sim-openai"), {t.request_id: 1 for t in tickets})

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
    assert redis_client.zcard(keys.in_flight("sim-openai")) == 0
    blocked_ms = redis_client.pttl(keys.rate_blocked("provider:sim-openai"))
    assert 0 < blocked_ms <= 60_000, "blocked for the retry-after the provider sent"
    actual = first.input_tokens + 2 * first.output_tokens  # weights 1 and 2
    correction = float(redis_client.hget(keys.fair_corrections(), "product"))
    assert correction == pytest.approx((actual - 100.0) + (0.0 - 100.0))
    assert float(redis_client.hget(keys.service_received(), "product")) == actual
