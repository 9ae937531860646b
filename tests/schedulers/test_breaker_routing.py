"""The scheduler loop routing around circuit breakers, on a real Redis and database.

As in test_loop.py, no worker runs: what the scheduler sent is read back from the provider
queues. Breakers are opened the way workers open them, by recording failures.
"""

from __future__ import annotations

import dataclasses
import time

import pytest

from broker import redis_keys
from broker.config.resilience import BreakerConfig
from broker.queues import QueueEntry, push_front
from broker.schemas.http import JobCreate
from broker.submission import Submitter
from schedulers.capacity import InFlight
from schedulers.dispatch import Dispatcher
from schedulers.loop import Scheduler
from schedulers.ratelimits import RateLimits
from workers.breakers import Breakers
from workers.celery_app import create_celery_app, tickets_of

OPEN_S = 1.5  # long enough that a round on a loaded machine does not outlive an open breaker
PROBES = 2


@pytest.fixture
def config(settings):
    base = settings.config
    four = base.with_providers([p.model_copy(update={"concurrency": 4}) for p in base.providers])
    breakers = BreakerConfig(
        window_s=2,
        min_calls=4,
        failure_rate=0.5,
        consecutive_failures=100,
        open_s=OPEN_S,
        probes=PROBES,
        unavailable_s=60.0,
    )
    return four.model_copy(update={"breakers": breakers})


@pytest.fixture
def breakers(redis_client, config) -> Breakers:
    return Breakers(redis_client, config)


@pytest.fixture
def scheduler(settings, config, db, redis_client, breakers):
    in_flight = InFlight(redis_client, config, margin=0)
    limits = RateLimits(redis_client, config)
    dispatcher = Dispatcher(
        config, db, redis_client, create_celery_app(settings), in_flight, limits
    )
    return Scheduler(redis_client, config, in_flight, limits, dispatcher, breakers=breakers)


@pytest.fixture
def submit(db, redis_client, config):
    submitter = Submitter(db, redis_client, config)

    def _submit(team: str, n: int, model: str = "gpt-4o-mini") -> str:
        body = JobCreate(
            feature="search",
            requests=[
                {
                    "custom_id": f"{team}-{model}-{i}",
                    "model": model,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                for i in range(n)
            ],
        )
        return submitter.submit(config.team(team), body).id

    return _submit


def tasks(redis_client, provider: str) -> list[dict]:
    """Every ticket waiting in a provider's Celery queue (a message may carry several)."""
    messages = reversed(redis_client.lrange(f"provider.{provider}", 0, -1))
    return [ticket for raw in messages for ticket in tickets_of(raw)]


def models(redis_client, provider: str) -> list[str]:
    return [t["model"] for t in tasks(redis_client, provider)]


def waiting(redis_client, team: str) -> int:
    """Requests of ``team`` waiting in Redis: queued, or parked behind open breakers."""
    return redis_client.llen(redis_keys.team_queue(team, "medium")) + redis_client.llen(
        redis_keys.parked(team)
    )


def fail(breakers: Breakers, provider: str, model: str, n: int = 4) -> None:
    for _ in range(n):
        breakers.record(provider, model, "failure")


def test_no_default_team_allows_fallback(config):
    assert not any(t.allow_fallback for t in config.teams)


def test_an_open_provider_sends_requests_down_the_chain_even_without_allow_fallback(
    scheduler, submit, breakers, redis_client
):
    fail(breakers, "sim-openai", "gpt-4o-mini")
    assert breakers.admit("sim-openai", "gpt-4o-mini") == "provider:sim-openai"
    submit("content", 2)
    submit("product", 2)
    assert scheduler.run_once() == 4
    assert tasks(redis_client, "sim-openai") == []
    sent = tasks(redis_client, "sim-anthropic")
    assert [t["model"] for t in sent] == ["claude-haiku-4-5"] * 4
    assert {t["team"] for t in sent} == {"content", "product"}
    assert all(QueueEntry.decode(t["entry"]).model == "gpt-4o-mini" for t in sent)


def test_an_open_model_breaker_sends_only_that_models_requests_elsewhere(
    scheduler, submit, breakers, redis_client, config
):
    strict = config.breakers.model_copy(update={"failure_rate": 0.6})
    b = Breakers(redis_client, config.model_copy(update={"breakers": strict}))
    for _ in range(4):
        b.record("sim-openai", "gpt-4o", "success")
    fail(b, "sim-openai", "gpt-4o-mini")  # the model 4 of 4, its provider 4 of 8
    allowances = b.allowances()
    assert allowances["model:gpt-4o-mini"] == 0 and allowances["provider:sim-openai"] is None
    submit("content", 1, "gpt-4o-mini")
    submit("content", 1, "gpt-4o")
    assert scheduler.run_once() == 2
    assert models(redis_client, "sim-openai") == ["gpt-4o"]
    assert models(redis_client, "sim-anthropic") == ["claude-haiku-4-5"]


def test_an_open_breaker_at_the_end_of_every_route_holds_the_work_and_blocks_nobody_else(
    scheduler, submit, breakers, redis_client
):
    fail(breakers, "sim-openai", "gpt-4o")
    submit("content", 3, "gpt-4o")  # no fallbacks: nowhere to go
    submit("product", 2, "claude-haiku-4-5")
    assert scheduler.run_once() == 2
    assert tasks(redis_client, "sim-openai") == []
    assert models(redis_client, "sim-anthropic") == ["claude-haiku-4-5"] * 2
    assert waiting(redis_client, "content") == 3, "waits, not failed"


def test_nothing_goes_while_the_whole_chain_is_open(scheduler, submit, breakers, redis_client):
    breakers.record("sim-openai", "gpt-4o-mini", "unavailable")
    breakers.record("sim-anthropic", "claude-haiku-4-5", "unavailable")
    submit("content", 2)
    assert scheduler.run_once() == 0
    assert waiting(redis_client, "content") == 2


def requeue_at(redis_client, team: str, chain_index: int) -> QueueEntry:
    """Replace the team's only queued entry with the same one at ``chain_index`` (a hand-back)."""
    queue = redis_keys.team_queue(team, "medium")
    (raw,) = redis_client.lpop(queue, 10)
    entry = dataclasses.replace(QueueEntry.decode(raw), chain_index=chain_index)
    push_front(redis_client, team, "medium", [entry])
    return entry


@pytest.mark.parametrize(
    ("chain_index", "provider", "model"),
    [
        (1, "sim-anthropic", "claude-haiku-4-5"),
        (2, "sim-openai", "gpt-4.1-nano"),
        (7, "sim-openai", "gpt-4.1-nano"),
    ],
)
def test_a_handed_back_request_starts_at_its_chain_position_when_all_is_healthy(
    scheduler, submit, redis_client, chain_index, provider, model
):
    submit("content", 1)
    entry = requeue_at(redis_client, "content", chain_index)
    assert scheduler.run_once() == 1
    (ticket,) = tasks(redis_client, provider)
    assert ticket["model"] == model
    assert QueueEntry.decode(ticket["entry"]) == entry, "the entry keeps its chain position"
    others = {"sim-openai", "sim-anthropic"} - {provider}
    assert all(tasks(redis_client, p) == [] for p in others)


def test_a_handed_back_request_skips_an_open_model_further_down(
    scheduler, submit, breakers, redis_client
):
    fail(breakers, "sim-anthropic", "claude-haiku-4-5")
    submit("content", 1)
    requeue_at(redis_client, "content", 1)
    assert scheduler.run_once() == 1
    assert models(redis_client, "sim-openai") == ["gpt-4.1-nano"]


def half_open(breakers: Breakers, provider: str, model: str) -> None:
    fail(breakers, provider, model)
    assert breakers.allowances()[f"provider:{provider}"] == 0
    time.sleep(OPEN_S + 0.2)
    assert breakers.allowances()[f"provider:{provider}"] == PROBES


def test_a_half_open_provider_gets_only_its_probes_in_a_round(
    scheduler, submit, breakers, redis_client
):
    half_open(breakers, "sim-anthropic", "claude-haiku-4-5")
    submit("content", 3, "claude-haiku-4-5")
    submit("product", 3, "claude-sonnet-4-5")  # another model of the half-open provider
    assert scheduler.run_once() == PROBES
    assert len(tasks(redis_client, "sim-anthropic")) == PROBES
    assert sum(waiting(redis_client, team) for team in ("content", "product")) == 6 - PROBES


def test_a_half_open_providers_probes_are_sent_once_not_every_round(
    scheduler, submit, breakers, redis_client
):
    half_open(breakers, "sim-anthropic", "claude-haiku-4-5")
    submit("content", 6, "claude-haiku-4-5")
    assert [scheduler.run_once() for _ in range(3)] == [PROBES, 0, 0]
    assert breakers.allowances()["provider:sim-anthropic"] == 0, "the permits are spent"
    for _ in range(PROBES):  # the probes succeed
        breakers.record("sim-anthropic", "claude-haiku-4-5", "success")
    assert scheduler.run_once() == 4 - PROBES, "closed: the pool's free slots fill"


def test_past_a_half_open_provider_s_probes_the_chain_goes_on(
    scheduler, submit, breakers, redis_client
):
    half_open(breakers, "sim-openai", "gpt-4o-mini")
    submit("content", 5)
    assert scheduler.run_once() == 5
    assert models(redis_client, "sim-openai") == ["gpt-4o-mini"] * PROBES
    assert models(redis_client, "sim-anthropic") == ["claude-haiku-4-5"] * (5 - PROBES)


def test_an_entry_carries_its_chain_position_only_past_the_head():
    head = QueueEntry("req_1", "gpt-4o-mini", 20, 256, 1_700_000_000_000, "search")
    assert head.encode() == "req_1 gpt-4o-mini 20 256 1700000000000 search -"
    moved = dataclasses.replace(head, chain_index=2)
    assert moved.encode() == "req_1 gpt-4o-mini 20 256 1700000000000 search - 2"
    assert QueueEntry.decode(moved.encode()) == moved
    assert QueueEntry.decode(head.encode().encode()).chain_index == 0, "seven fields still decode"


def parked(redis_client, team: str) -> list[str]:
    """Request ids on a team's parked list, in order."""
    return [
        raw.split(b" ")[1].decode() for raw in redis_client.lrange(redis_keys.parked(team), 0, -1)
    ]


def open_every_model_of_the_mini_chain(redis_client, config) -> None:
    """Open the model breakers of gpt-4o-mini's whole chain, leaving both providers closed."""
    strict = config.breakers.model_copy(update={"failure_rate": 0.6})
    b = Breakers(redis_client, config.model_copy(update={"breakers": strict}))
    for _ in range(8):
        b.record("sim-openai", "gpt-4o", "success")
    for _ in range(4):
        b.record("sim-anthropic", "claude-sonnet-4-5", "success")
    fail(b, "sim-openai", "gpt-4o-mini")
    fail(b, "sim-anthropic", "claude-haiku-4-5")
    fail(b, "sim-openai", "gpt-4.1-nano")
    refusing = {s for s, n in b.allowances().items() if n == 0}
    assert refusing == {"model:gpt-4o-mini", "model:claude-haiku-4-5", "model:gpt-4.1-nano"}


def test_a_request_whose_whole_chain_is_open_does_not_hold_back_its_teams_other_work(
    scheduler, submit, redis_client, config
):
    open_every_model_of_the_mini_chain(redis_client, config)
    submit("content", 3, "gpt-4o-mini")  # nowhere to go: every model of its chain is open
    submit("content", 2, "gpt-4o")  # behind them in the same queue, on a healthy model
    assert scheduler.run_once() == 2
    assert models(redis_client, "sim-openai") == ["gpt-4o"] * 2
    assert len(parked(redis_client, "content")) == 3, "set aside, still queued, not failed"
    assert redis_client.llen(redis_keys.team_queue("content", "medium")) == 0


def test_parked_requests_go_back_in_order_once_a_breaker_on_their_chain_lets_calls_through(
    scheduler, submit, redis_client, config
):
    open_every_model_of_the_mini_chain(redis_client, config)
    submit("content", 3)
    assert scheduler.run_once() == 0
    order = parked(redis_client, "content")
    assert len(order) == 3
    assert scheduler.run_once() == 0, "nothing changed: they stay parked"
    assert len(parked(redis_client, "content")) == 3
    time.sleep(OPEN_S + 0.2)  # every model half-open, with PROBES permits each
    assert scheduler.run_once() == 3
    sent = tasks(redis_client, "sim-openai") + tasks(redis_client, "sim-anthropic")
    assert [t["model"] for t in sent] == ["gpt-4o-mini"] * PROBES + ["claude-haiku-4-5"]
    assert [QueueEntry.decode(t["entry"]).request_id for t in sent] == order, "in their order"
    assert parked(redis_client, "content") == []
    assert redis_client.sismember(redis_keys.parked_teams(), "content") == 0
