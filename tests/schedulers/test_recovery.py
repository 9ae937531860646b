"""Putting Redis back in line with the database, on a real Redis and SQLite/PostgreSQL: queued
requests missing from Redis, a Redis that lost everything, and attempts that died with their
worker.

Recovery looks at every request in the database, so this module has a database of its own,
emptied before each test.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import delete, select, update

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig, SchedulerConfig, load_config
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate
from broker.states import JobStatus, Priority, RequestStatus
from broker.store import Database, Job, LedgerEntry, Request, transitions
from broker.store.models import ProviderCall
from broker.store.transitions import Claimed, HandBack, Outcome
from broker.submission import Submitter
from schedulers.alerts import Alerts, recent_alerts
from schedulers.budgets import BudgetLimits, Budgets
from schedulers.parking import Parking
from schedulers.recovery import Recovery

REAP_AFTER_S = 0.05
MAX_ATTEMPTS = 3


@pytest.fixture(scope="module")
def module_db(module_database_url: str) -> Iterator[Database]:
    database = Database(module_database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def store(module_db: Database) -> Database:
    def empty(session) -> None:
        for table in (ProviderCall, LedgerEntry, Request, Job):
            session.execute(delete(table))

    module_db.write(empty)
    return module_db


@pytest.fixture
def config() -> BrokerConfig:
    scheduler = SchedulerConfig(max_attempts=MAX_ATTEMPTS, reap_after_s=REAP_AFTER_S)
    return load_config().model_copy(update={"scheduler": scheduler})


def make_recovery(redis_client, store: Database, config: BrokerConfig) -> Recovery:
    budgets = Budgets(redis_client, store, config, BudgetLimits(store, config))
    return Recovery(redis_client, store, config, budgets, Alerts(redis_client, config))


@pytest.fixture
def recovery(redis_client, store, config) -> Recovery:
    return make_recovery(redis_client, store, config)


@pytest.fixture
def submit(store, redis_client, config):
    submitter = Submitter(store, redis_client, config)

    def _submit(team: str, n: int, priority: str = "medium") -> tuple[str, list[str]]:
        body = JobCreate(
            feature="search",
            priority=priority,
            requests=[
                {
                    "custom_id": f"r{i}",
                    "model": "gpt-4o-mini",
                    "messages": [{"role": "user", "content": f"hello {i}"}],
                }
                for i in range(n)
            ],
        )
        job_id = submitter.submit(config.team(team), body).id
        with store.session() as s:
            query = select(Request.id).where(Request.job_id == job_id).order_by(Request.seq)
            return job_id, list(s.scalars(query))

    return _submit


def queue(redis_client, team: str, priority: str = "medium") -> list[QueueEntry]:
    return [
        QueueEntry.decode(r)
        for r in redis_client.lrange(redis_keys.team_queue(team, priority), 0, -1)
    ]


def ids(redis_client, team: str, priority: str = "medium") -> list[str]:
    return [e.request_id for e in queue(redis_client, team, priority)]


def drop(redis_client, team: str, request_ids: list[str], priority: str = "medium") -> None:
    """Lose these requests' entries, as a process that died before pushing would."""
    key = redis_keys.team_queue(team, priority)
    for raw in redis_client.lrange(key, 0, -1):
        if raw.split(b" ", 1)[0].decode() in request_ids:
            redis_client.lrem(key, 0, raw)


def run(store: Database, request_ids: list[str]) -> list[Claimed]:
    dispatched = store.write(lambda s: transitions.mark_dispatched(s, request_ids))
    attempts = [(d.request_id, d.attempt) for d in dispatched]
    claimed = store.write(lambda s: transitions.claim_many(s, attempts))
    return [claimed[a] for a in attempts]


def row(store: Database, request_id: str) -> Request:
    with store.session() as s:
        return s.get(Request, request_id)


# --- reconcile_queues ---------------------------------------------------------------------------


def test_reconcile_pushes_back_exactly_the_missing_requests(recovery, submit, redis_client):
    _, product = submit("product", 5)
    submit("content", 2)
    content_before = redis_client.lrange(redis_keys.team_queue("content", "medium"), 0, -1)
    drop(redis_client, "product", [product[1], product[3]])
    assert ids(redis_client, "product") == [product[0], product[2], product[4]]

    assert recovery.reconcile_queues() == 2
    assert ids(redis_client, "product") == [
        product[1],
        product[3],
        product[0],
        product[2],
        product[4],
    ]
    pushed = queue(redis_client, "product")[0]
    assert (pushed.model, pushed.chain_index, pushed.feature) == ("gpt-4o-mini", 0, "search")
    assert redis_client.lrange(redis_keys.team_queue("content", "medium"), 0, -1) == content_before
    assert recovery.reconcile_queues() == 0, "nothing is missing any more"
    assert len(ids(redis_client, "product")) == 5


def test_reconcile_does_nothing_when_the_counts_match(recovery, submit, redis_client):
    submit("product", 3)
    before = redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1)
    assert recovery.reconcile_queues() == 0
    assert redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1) == before


def test_reconcile_with_nothing_queued_does_nothing(recovery, redis_client):
    assert recovery.reconcile_queues() == 0
    assert redis_client.keys(redis_keys.team_queue_prefix() + "*") == []


def test_entries_of_cancelled_requests_cause_no_pushes(recovery, submit, redis_client, store):
    cancelled_job, _ = submit("product", 3)
    store.write(lambda s: transitions.cancel_job(s, cancelled_job))
    _, live = submit("product", 2)
    before = redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1)
    assert len(before) == 5, "the cancelled entries wait to be skipped"
    assert recovery.reconcile_queues() == 0
    assert redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1) == before
    # Only cancelled entries left and nothing queued: still nothing to push.
    drop(redis_client, "product", live)
    store.write(
        lambda s: s.execute(
            update(Request).where(Request.id.in_(live)).values(status=RequestStatus.CANCELLED)
        )
    )
    assert recovery.reconcile_queues() == 0


def test_requests_in_flight_are_not_pushed(recovery, submit, redis_client, store):
    _, (a, b, c) = submit("product", 3)
    run(store, [a])
    store.write(lambda s: transitions.mark_dispatched(s, [b]))
    drop(redis_client, "product", [a, b])  # the scheduler popped them
    assert recovery.reconcile_queues() == 0
    assert ids(redis_client, "product") == [c]


def test_a_handed_back_request_lost_before_its_push_comes_back_at_its_chain_position(
    recovery, submit, redis_client, store
):
    _, (a,) = submit("product", 1, priority="high")
    (original,) = queue(redis_client, "product", "high")
    redis_client.delete(redis_keys.team_queue("product", "high"))  # popped by the scheduler
    (claimed,) = run(store, [a])
    # The worker requeued it in the database and died before pushing it.
    assert store.write(lambda s: transitions.hand_back_many(s, [(claimed, HandBack(2, True))]))

    assert recovery.reconcile_queues() == 1
    (entry,) = queue(redis_client, "product", "high")
    assert entry.request_id == a and entry.chain_index == 2
    assert (entry.model, entry.input_bound, entry.max_output, entry.feature) == (
        original.model,
        original.input_bound,
        original.max_output,
        original.feature,
    )
    assert abs(entry.queued_ms - original.queued_ms) < 1000, "it keeps its age"
    assert b"product" in redis_client.smembers(redis_keys.backlogged_teams())


def park_all(redis_client, team: str, priority: str = "medium") -> list[str]:
    """Move the team's queued entries to its parked list, as a round does when every breaker
    of their chain is open."""
    entries = queue(redis_client, team, priority)
    redis_client.delete(redis_keys.team_queue(team, priority))
    with redis_client.pipeline(transaction=False) as pipe:
        Parking(redis_client).park(pipe, [(team, Priority(priority), e) for e in entries])
        pipe.execute()
    return [e.request_id for e in entries]


def test_parked_requests_are_not_missing(recovery, submit, redis_client):
    _, (a, b, c) = submit("product", 3)
    assert park_all(redis_client, "product") == [a, b, c]
    assert recovery.reconcile_queues() == 0
    assert ids(redis_client, "product") == []
    drop_parked = redis_client.lpop(redis_keys.parked("product"))  # one lost all the same
    assert drop_parked.split(b" ")[1].decode() == a
    assert recovery.reconcile_queues() == 1
    assert ids(redis_client, "product") == [a]


# --- ensure_epoch -------------------------------------------------------------------------------


def test_after_redis_lost_everything_dispatched_requests_are_queued_again(
    recovery, submit, redis_client, store
):
    _, (dispatched, running, queued, handed, held) = submit("product", 5)
    store.write(lambda s: transitions.mark_dispatched(s, [dispatched]))
    run(store, [running])
    (h,) = run(store, [handed])
    store.write(lambda s: transitions.hand_back_many(s, [(h, HandBack(1, failed=True))]))
    store.write(lambda s: transitions.hold_for_budget(s, [held]))
    redis_client.flushdb()

    assert recovery.ensure_epoch() is True
    assert redis_client.exists(redis_keys.epoch())
    assert recovery.ensure_epoch() is False, "once"

    r = row(store, dispatched)
    assert (r.status, r.attempts, r.failures) == (RequestStatus.QUEUED, 1, 0), (
        "the same attempt number in the row; losing Redis is not the request's failure"
    )
    assert row(store, held).status == RequestStatus.QUEUED
    assert row(store, running).status == RequestStatus.RUNNING
    entries = {e.request_id: e for e in queue(redis_client, "product")}
    assert set(entries) == {dispatched, queued, handed, held}
    assert entries[handed].chain_index == 1
    assert entries[dispatched].chain_index == 0
    assert b"product" in redis_client.smembers(redis_keys.backlogged_teams())

    # A worker still holding the lost task cannot claim it, now or after the next dispatch.
    assert store.write(lambda s: transitions.claim_many(s, [(dispatched, 1)])) == {}
    (again,) = store.write(lambda s: transitions.mark_dispatched(s, [dispatched]))
    assert again.attempt == 2
    assert store.write(lambda s: transitions.claim_many(s, [(dispatched, 1)])) == {}
    assert set(store.write(lambda s: transitions.claim_many(s, [(dispatched, 2)]))) == {
        (dispatched, 2)
    }


def test_ensure_epoch_does_not_push_twice_what_redis_still_holds(
    recovery, submit, redis_client, store
):
    _, (a, b) = submit("product", 2)
    store.write(lambda s: transitions.mark_dispatched(s, [b]))
    redis_client.delete(redis_keys.epoch())  # only the marker is gone: a's entry is still there
    assert recovery.ensure_epoch() is True
    assert sorted(ids(redis_client, "product")) == sorted([a, b])


def test_ensure_epoch_does_not_queue_what_is_parked(recovery, submit, redis_client):
    _, (a,) = submit("content", 1)
    _, (b,) = submit("product", 1)
    park_all(redis_client, "product")
    redis_client.delete(redis_keys.epoch())
    assert recovery.ensure_epoch() is True
    assert ids(redis_client, "content") == [a]
    assert ids(redis_client, "product") == [], f"{b} is parked, not lost"


# --- the reaper ---------------------------------------------------------------------------------


def outlive_reap_after() -> None:
    """Let the current attempt's dispatch be older than reap_after_s."""
    time.sleep(REAP_AFTER_S * 2)


def test_a_lost_attempt_counts_as_a_failure_until_max_attempts(
    recovery, submit, redis_client, store, config
):
    assert recovery.reap_after_s == REAP_AFTER_S
    job_id, (a,) = submit("product", 1)
    redis_client.delete(redis_keys.team_queue("product", "medium"))

    for attempt in range(1, MAX_ATTEMPTS):
        (claimed,) = run(store, [a])
        assert claimed.attempt == attempt
        redis_client.zadd(redis_keys.in_flight("sim-openai"), {a: time.time()})
        outlive_reap_after()
        assert recovery.reap() == 1
        r = row(store, a)
        assert (r.status, r.attempts, r.failures) == (RequestStatus.QUEUED, attempt, attempt)
        assert ids(redis_client, "product") == [a], "back at the head of its queue"
        redis_client.delete(redis_keys.team_queue("product", "medium"))
        assert redis_client.zcard(redis_keys.in_flight("sim-openai")) == 0, "its slot is released"
        alert = recent_alerts(redis_client, "product")[0]
        assert (alert["type"], alert["attempt"]) == ("attempt_lost", attempt)
        assert alert["message"].endswith("queued again")

    (last,) = run(store, [a])
    outlive_reap_after()
    assert recovery.reap() == 1
    r = row(store, a)
    assert (r.status, r.error_code, r.attempts) == (RequestStatus.FAILED, "worker_lost", 3)
    assert f"attempt {MAX_ATTEMPTS} stopped answering" in r.error
    assert ids(redis_client, "product") == [], "not queued again"
    with store.session() as s:
        job = s.get(Job, job_id)
        assert (job.status, job.n_failed) == (JobStatus.COMPLETED, 1)
    assert recent_alerts(redis_client, "product")[0]["message"].endswith(
        "failed after the last attempt"
    )
    assert recovery.reap() == 0, "once"

    # The lost attempt was alive after all: it records nothing.
    done = Outcome(model="gpt-4o-mini", provider="sim-openai", latency_ms=1, output="late")
    assert store.write(lambda s: transitions.finish_many(s, [(last, done)])) == [False]


def test_failures_from_hand_backs_count_towards_worker_lost(recovery, submit, redis_client, store):
    _, (a,) = submit("product", 1)
    for _ in range(MAX_ATTEMPTS - 1):
        (claimed,) = run(store, [a])
        back = [(claimed, HandBack(1, failed=True))]
        store.write(lambda s, back=back: transitions.hand_back_many(s, back))
    store.write(lambda s: transitions.mark_dispatched(s, [a]))  # never claimed: lost in flight
    outlive_reap_after()
    assert recovery.reap() == 1
    r = row(store, a)
    assert (r.status, r.error_code, r.failures) == (RequestStatus.FAILED, "worker_lost", 2)


def test_an_attempt_younger_than_reap_after_is_left_alone(submit, redis_client, store, config):
    _, (a,) = submit("product", 1)
    run(store, [a])
    default = config.model_copy(update={"scheduler": SchedulerConfig()})
    patient = make_recovery(redis_client, store, default)
    assert patient.reap_after_s > 60
    assert patient.reap() == 0
    assert row(store, a).status == RequestStatus.RUNNING


def test_a_dispatched_request_down_its_chain_is_queued_again_at_its_position(
    recovery, submit, redis_client, store
):
    _, (a,) = submit("product", 1)
    (first,) = run(store, [a])
    store.write(lambda s: transitions.hand_back_many(s, [(first, HandBack(1, failed=True))]))
    (second,) = store.write(lambda s: transitions.mark_dispatched(s, [a]))
    assert second.attempt == 2
    redis_client.flushdb()

    assert recovery.ensure_epoch() is True
    r = row(store, a)
    assert (r.status, r.attempts, r.chain_index, r.failures) == (RequestStatus.QUEUED, 2, 1, 1)
    (entry,) = queue(redis_client, "product")
    assert (entry.request_id, entry.chain_index) == (a, 1)
    assert store.write(lambda s: transitions.claim_many(s, [(a, 2)])) == {}


# --- dispatches whose task is gone ----------------------------------------------------------


@pytest.fixture
def dispatcher(store, redis_client, settings, config):
    """The production dispatcher on this test's database and Redis, no slot margin."""
    from schedulers.capacity import InFlight
    from schedulers.dispatch import Dispatcher
    from schedulers.ratelimits import RateLimits
    from workers.celery_app import create_celery_app

    return Dispatcher(
        config,
        store,
        redis_client,
        create_celery_app(settings),
        InFlight(redis_client, config, margin=0),
        RateLimits(redis_client, config),
    )


def test_a_dispatch_whose_task_is_nowhere_in_redis_is_queued_again_once(
    recovery, submit, store, redis_client, dispatcher
):
    """Two requests dispatched long enough ago: one's Celery message is in its provider queue,
    the other's was lost. Only the lost one goes back to its queue, under a new attempt number
    later; the one whose message waits is left alone."""
    from schedulers.dispatch import Pick
    from workers.celery_app import UNACKED_KEY, attempts_in_redis

    _, (kept, lost) = submit("product", 2)
    redis_client.delete(redis_keys.team_queue("product", "medium"))
    picks = [
        Pick(
            "product",
            Priority.MEDIUM,
            QueueEntry(rid, "gpt-4o-mini", 8, 16, 0),
            "sim-openai",
            "gpt-4o-mini",
            1.0,
        )
        for rid in (kept, lost)
    ]
    sent = [p for pick in picks for p in dispatcher.dispatch([pick])[0]]  # a message each
    assert len(sent) == 2
    assert attempts_in_redis(redis_client, ["provider.sim-openai"]) == {(kept, 1), (lost, 1)}
    # Lose one message, as a Redis that failed over without it would.
    for raw in redis_client.lrange("provider.sim-openai", 0, -1):
        if lost.encode() in raw:
            redis_client.lrem("provider.sim-openai", 0, raw)
    # The other one a worker has taken: kombu keeps it in its unacked hash until the ack.
    (raw,) = redis_client.lrange("provider.sim-openai", 0, -1)
    redis_client.delete("provider.sim-openai")
    delivered = json.dumps([json.loads(raw), "", "provider.sim-openai"])
    redis_client.hset(UNACKED_KEY, "tag-1", delivered)
    assert recovery.requeue_lost_tasks(older_than_s=60) == 0, "not before older_than_s"
    assert recovery.requeue_lost_tasks(older_than_s=0) == 1
    with store.session() as s:
        rows = {r.id: r for r in s.scalars(select(Request).where(Request.id.in_([kept, lost])))}
    assert rows[kept].status == RequestStatus.DISPATCHED
    assert (rows[lost].status, rows[lost].failures) == (RequestStatus.QUEUED, 0)
    assert ids(redis_client, "product") == [lost]
    assert recovery.requeue_lost_tasks(older_than_s=0) == 0, "nothing twice"


def test_every_attempt_of_a_several_ticket_message_is_found_queued_or_delivered(
    submit, redis_client, dispatcher
):
    """One round's picks for a provider travel in one ``execute_many`` message: recovery sees
    each of its attempts, whether the message waits in the queue or a worker holds it."""
    from schedulers.dispatch import Pick
    from workers.celery_app import EXECUTE_MANY, UNACKED_KEY, attempts_in_redis, held_by_workers

    _, rids = submit("product", 3)
    redis_client.delete(redis_keys.team_queue("product", "medium"))
    entries = [QueueEntry(rid, "gpt-4o-mini", 8, 16, 0) for rid in rids]
    picks = [
        Pick("product", Priority.MEDIUM, e, "sim-openai", "gpt-4o-mini", 1.0) for e in entries
    ]
    assert len(dispatcher.dispatch(picks)[0]) == 3
    (raw,) = redis_client.lrange("provider.sim-openai", 0, -1)
    assert json.loads(raw)["headers"]["task"] == EXECUTE_MANY
    assert attempts_in_redis(redis_client, ["provider.sim-openai"]) == {(r, 1) for r in rids}
    redis_client.delete("provider.sim-openai")
    delivered = json.dumps([json.loads(raw), "", "provider.sim-openai"])
    redis_client.hset(UNACKED_KEY, "tag-many", delivered)
    assert attempts_in_redis(redis_client, ["provider.sim-openai"]) == {(r, 1) for r in rids}
    assert held_by_workers(redis_client, "provider.sim-openai") == {"tag-many": 3}
    assert held_by_workers(redis_client, "provider.sim-anthropic") == {}
    redis_client.hdel(UNACKED_KEY, "tag-many")


def test_unreadable_messages_in_redis_are_ignored(redis_client):
    from workers.celery_app import UNACKED_KEY, attempts_in_redis

    redis_client.rpush("provider.sim-openai", b"not json", b'{"headers": {"task": "other"}}')
    redis_client.hset(UNACKED_KEY, "tag", b"[1, 2")
    assert attempts_in_redis(redis_client, ["provider.sim-openai"]) == set()
