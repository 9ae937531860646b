"""The scheduler loop on a real Redis and database, sending real Celery messages.

No worker runs here: what the scheduler sent is read back from the provider queues in Redis.
"""

from __future__ import annotations

import time

import pytest

from broker import redis_keys
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate
from broker.store import Job, Request, transitions
from broker.submission import Submitter
from schedulers.capacity import InFlight, release
from schedulers.deadlines import Deadlines
from schedulers.dispatch import Dispatcher
from schedulers.loop import Scheduler
from schedulers.ratelimits import RateLimits
from schedulers.ticket import Ticket
from workers.celery_app import create_celery_app, tickets_of


@pytest.fixture
def config(settings):
    base = settings.config
    return base.with_providers([p.model_copy(update={"concurrency": 4}) for p in base.providers])


@pytest.fixture
def scheduler(settings, config, db, redis_client):
    in_flight = InFlight(redis_client, config, margin=0)
    limits = RateLimits(redis_client, config)
    celery_app = create_celery_app(settings)
    dispatcher = Dispatcher(config, db, redis_client, celery_app, in_flight, limits)
    return Scheduler(redis_client, config, in_flight, limits, dispatcher)


@pytest.fixture
def submit(db, redis_client, config):
    submitter = Submitter(db, redis_client, config)

    def _submit(team: str, n: int, model: str = "gpt-4o-mini", priority: str = "medium") -> str:
        body = JobCreate(
            feature="search",
            priority=priority,
            requests=[
                {
                    "custom_id": f"{team}-{priority}-{i}",
                    "model": model,
                    "messages": [{"role": "user", "content": "hi"}],
                }
                for i in range(n)
            ],
        )
        return submitter.submit(config.team(team), body).id

    return _submit


def sent(redis_client, provider: str) -> list[tuple[str, int]]:
    """(request id, attempt) of every ticket waiting in a provider's Celery queue, in order (a
    message may carry several)."""
    return [(t["request_id"], t["attempt"]) for t in tickets(redis_client, provider)]


def tickets(redis_client, provider: str) -> list[dict]:
    messages = reversed(redis_client.lrange(f"provider.{provider}", 0, -1))  # LPUSH, BRPOP
    return [ticket for raw in messages for ticket in tickets_of(raw)]


def free(redis_client, provider: str, request_id: str) -> None:
    with redis_client.pipeline() as pipe:
        release(pipe, provider, request_id)
        pipe.execute()


def team_of(db, request_id: str) -> str:
    with db.session() as s:
        return s.get(Request, request_id).team_id


def test_teams_take_turns_and_the_provider_cap_holds(scheduler, submit, redis_client, db):
    submit("product", 10)
    submit("content", 10)
    assert scheduler.run_once() == 4
    assert scheduler.run_once() == 0, "in flight is at the pool's concurrency"
    teams = [team_of(db, rid) for rid, _ in sent(redis_client, "sim-openai")]
    assert sorted(teams) == ["content", "content", "product", "product"]
    assert teams[0] != teams[1]
    assert all(attempt == 1 for _, attempt in sent(redis_client, "sim-openai"))


def test_a_finished_attempt_frees_its_slot(scheduler, submit, redis_client):
    submit("product", 6)
    assert scheduler.run_once() == 4
    rid, _ = sent(redis_client, "sim-openai")[0]
    free(redis_client, "sim-openai", rid)
    assert scheduler.run_once() == 1


def test_a_round_with_nothing_queued_or_parked_skips_the_room(
    scheduler, submit, redis_client, monkeypatch
):
    """The round after a dispatch, and the one a finished attempt wakes, find the queues
    empty: they end before asking Redis for slots, rate limits and breakers."""
    import schedulers.loop

    assert scheduler.run_once() == 0, "a new leader works out the room once"
    submit("product", 2)
    assert scheduler.run_once() == 2
    rooms = []
    real = schedulers.loop.Room
    monkeypatch.setattr(schedulers.loop, "Room", lambda *a: rooms.append(a) or real(*a))
    assert scheduler.run_once() == 0
    assert rooms == []
    submit("product", 1)
    assert scheduler.run_once() == 1  # queued work: the round works out its room again
    assert len(rooms) == 1


def test_high_priority_goes_before_queued_low(scheduler, submit, redis_client):
    submit("product", 50, priority="low")
    high_job = submit("product", 1, priority="high")
    scheduler.run_once()
    first, _ = sent(redis_client, "sim-openai")[0]
    assert first.startswith("req_" + high_job.removeprefix("job_"))


def test_a_full_provider_does_not_block_other_teams(scheduler, submit, redis_client, db):
    submit("product", 10, model="gpt-4o-mini")
    submit("content", 10, model="claude-haiku-4-5")
    scheduler.run_once()
    # Fill the openai pool, then only the team on the other provider can move.
    redis_client.zadd(redis_keys.in_flight("sim-openai"), {f"x{i}": 9e12 for i in range(4)})
    free(redis_client, "sim-anthropic", sent(redis_client, "sim-anthropic")[0][0])
    assert scheduler.run_once() == 1
    assert team_of(db, sent(redis_client, "sim-anthropic")[-1][0]) == "content"


def test_cancelled_requests_are_never_sent(scheduler, submit, redis_client, db):
    job = submit("product", 3)
    with db.session() as session:
        transitions.cancel_job(session, job)
    assert scheduler.run_once() == 0
    assert sent(redis_client, "sim-openai") == []
    assert redis_client.llen(redis_keys.team_queue("product", "medium")) == 0, (
        "skipped entries are popped"
    )
    assert redis_client.smembers(redis_keys.backlogged_teams()) == set()


def test_a_high_request_behind_ten_thousand_low_goes_in_the_next_round(
    scheduler, submit, redis_client
):
    submit("product", 10_000, priority="low")
    assert scheduler.run_once() == 4, "the pool is full"
    high_job = submit("product", 1, priority="high")
    assert scheduler.run_once() == 0
    free(redis_client, "sim-openai", sent(redis_client, "sim-openai")[0][0])
    assert scheduler.run_once() == 1
    last, _ = sent(redis_client, "sim-openai")[-1]
    assert last.startswith("req_" + high_job.removeprefix("job_"))
    assert redis_client.llen(redis_keys.team_queue("product", "low")) == 10_000 - 4


def test_a_new_leader_sends_what_a_dead_one_recorded_but_never_sent(
    settings, config, db, redis_client, submit
):
    """The leader died after the database recorded the dispatch, before the tasks went out."""
    job = submit("product", 3)
    with db.session() as session:
        rids = [r.id for r in session.query(Request).filter_by(job_id=job).order_by(Request.seq)]
    journal = {
        rid: Ticket(
            rid,
            0,
            "product",
            "medium",
            "sim-openai",
            "gpt-4o-mini",
            QueueEntry(rid, "gpt-4o-mini", 5, 256, 0).encode(),
            1.0,
        ).encode()
        for rid in rids
    }
    redis_client.hset(redis_keys.dispatch_journal(), mapping=journal)
    db.write(lambda s: transitions.mark_dispatched(s, rids[:2]))  # the third never got this far

    in_flight = InFlight(redis_client, config, margin=0)
    limits = RateLimits(redis_client, config)
    dispatcher = Dispatcher(
        config, db, redis_client, create_celery_app(settings), in_flight, limits
    )
    assert dispatcher.recover() == 2
    assert sent(redis_client, "sim-openai") == [(rids[0], 1), (rids[1], 1)]
    assert not redis_client.exists(redis_keys.dispatch_journal())
    # The next rounds pop the two already dispatched and send only the third.
    scheduler = Scheduler(redis_client, config, in_flight, limits, dispatcher)
    assert scheduler.run_once() + scheduler.run_once() == 1
    assert [rid for rid, _ in sent(redis_client, "sim-openai")] == rids
    assert redis_client.llen(redis_keys.team_queue("product", "medium")) == 0


def test_a_full_provider_sends_work_down_the_chain_only_for_teams_that_allow_it(
    settings, config, db, redis_client
):
    models = [
        m.model_copy(update={"fallbacks": ["claude-haiku-4-5"]}) if m.name == "gpt-4o-mini" else m
        for m in config.models
    ]
    teams = [t.model_copy(update={"allow_fallback": t.id == "product"}) for t in config.teams]
    chained = config.model_validate({**config.model_dump(), "models": models, "teams": teams})
    in_flight = InFlight(redis_client, chained, margin=0)
    limits = RateLimits(redis_client, chained)
    celery_app = create_celery_app(settings)
    dispatcher = Dispatcher(chained, db, redis_client, celery_app, in_flight, limits)
    scheduler = Scheduler(redis_client, chained, in_flight, limits, dispatcher)
    submitter = Submitter(db, redis_client, chained)
    for team in ("product", "content"):
        body = JobCreate(
            feature="search",
            requests=[
                {
                    "custom_id": f"{team}{i}",
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": "hi"}],
                }
                for i in range(3)
            ],
        )
        submitter.submit(chained.team(team), body)
    redis_client.zadd(redis_keys.in_flight("sim-openai"), {f"x{i}": 9e12 for i in range(4)})  # full

    assert scheduler.run_once() == 3
    overflow = sent(redis_client, "sim-anthropic")
    assert {team_of(db, rid) for rid, _ in overflow} == {"product"}
    assert redis_client.llen(redis_keys.team_queue("content", "medium")) == 3, (
        "content waits its turn"
    )
    assert {t["model"] for t in tickets(redis_client, "sim-anthropic")} == {"claude-haiku-4-5"}


def test_requests_past_their_completion_window_expire_and_are_never_sent(
    scheduler, db, redis_client, config
):
    body = JobCreate(
        feature="search",
        completion_window="1s",
        requests=[
            {
                "custom_id": f"r{i}",
                "model": "gpt-4o-mini",
                "messages": [{"role": "user", "content": "hi"}],
            }
            for i in range(3)
        ],
    )
    job = Submitter(db, redis_client, config).submit(config.team("product"), body)
    time.sleep(1.1)
    assert Deadlines(db).expire() >= 3  # the shared database may hold other overdue jobs
    assert scheduler.run_once() == 0
    assert sent(redis_client, "sim-openai") == []
    with db.session() as session:
        done = session.get(Job, job.id)
        assert (done.status, done.n_expired) == ("completed", 3)


def test_redis_going_away_between_rounds_does_not_stop_the_scheduler(scheduler):
    """Found by the Redis-restart chaos test: the idle wait after a round was outside the
    loop's error handling, so Redis stopping at that moment killed the process."""
    import threading

    import redis

    from broker.local.processes import free_port

    scheduler.run_once = lambda: 0  # a round that found nothing, then the wait on Redis
    scheduler._redis = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=None)
    stop, errors = threading.Event(), []

    def run():
        try:
            scheduler.run_forever(stop)
        except Exception as exc:  # the bug: the exception ends the thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.5)
    alive = thread.is_alive()
    stop.set()
    thread.join(5)
    assert alive and not errors, errors
