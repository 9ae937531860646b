"""The result store on SQLite and PostgreSQL: the migrated schema, and every state transition
acting once however often (or however concurrently) it is repeated."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, func, select, text, update

from broker.states import JobStatus, RequestStatus
from broker.store import Base, Database, Job, LedgerEntry, Request, transitions
from broker.store.db import MIGRATIONS, WriteConflict
from broker.store.models import utcnow
from broker.store.transitions import Claimed, Outcome

HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()


# --- schema -------------------------------------------------------------------------------------


def schema_diff(db: Database) -> list:
    with db.engine.connect() as connection:
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)


def revision(db: Database) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_the_migrated_schema_matches_the_models(db):
    assert revision(db) == HEAD
    assert schema_diff(db) == []


def test_migrate_is_idempotent_and_keeps_data(db, submit):
    job_id, _ = submit(2)
    again = Database(db.url)
    try:
        again.migrate()
        again.migrate()
        assert revision(again) == HEAD
        assert schema_diff(again) == []
        assert get_job(again, job_id).n_total == 2
    finally:
        again.dispose()


def test_times_read_back_are_utc_aware_on_every_database(db, submit):
    """SQLite keeps no offset: a naive time read back would not be the date-time the API's
    schema promises, nor comparable with an aware one."""
    job_id, _ = submit(1)
    job = get_job(db, job_id)
    assert job.created_at.tzinfo is not None and job.created_at.utcoffset().total_seconds() == 0
    assert job.expires_at.tzinfo is not None


def test_migrate_twice_on_a_fresh_file(tmp_path):
    fresh = Database(f"sqlite:///{tmp_path / 'nested' / 'fresh.db'}")
    try:
        assert revision(fresh) is None
        fresh.migrate()
        fresh.migrate()
        assert revision(fresh) == HEAD
        assert schema_diff(fresh) == []
    finally:
        fresh.dispose()


# --- helpers ------------------------------------------------------------------------------------


def get_job(db: Database, job_id: str) -> Job:
    with db.session() as s:
        return s.get(Job, job_id)


def get_request(db: Database, request_id: str) -> Request:
    with db.session() as s:
        return s.get(Request, request_id)


def statuses(db: Database, job_id: str) -> list[str]:
    with db.session() as s:
        query = select(Request.status).where(Request.job_id == job_id).order_by(Request.seq)
        return list(s.scalars(query))


def ledger(db: Database, job_id: str) -> list[LedgerEntry]:
    with db.session() as s:
        return list(s.scalars(select(LedgerEntry).where(LedgerEntry.job_id == job_id)))


def ok(cost: int = 21, **over) -> Outcome:
    fields = {
        "model": "gpt-4o-mini",
        "provider": "sim-openai",
        "latency_ms": 12,
        "output": "hi",
        "finish_reason": "stop",
        "input_tokens": 12,
        "cached_input_tokens": 7,
        "output_tokens": 30,
        "cost_micros": cost,
    }
    return Outcome(**{**fields, **over})


def failed() -> Outcome:
    return Outcome(
        model="gpt-4o-mini",
        provider="sim-openai",
        latency_ms=3,
        error_code="provider_rejected",
        error="sim-openai: bad request",
    )


def dispatch(db, ids):
    return db.write(lambda s: transitions.mark_dispatched(s, ids))


def claim(db, keys) -> dict[tuple[str, int], Claimed]:
    return db.write(lambda s: transitions.claim_many(s, keys))


def finish(db, items) -> list[bool]:
    return db.write(lambda s: transitions.finish_many(s, items))


def running(db, ids) -> list[Claimed]:
    """Dispatch and claim these requests: attempt 1, running."""
    dispatch(db, ids)
    claimed = claim(db, [(rid, 1) for rid in ids])
    return [claimed[(rid, 1)] for rid in ids]


# --- dispatch and claim -------------------------------------------------------------------------


def test_mark_dispatched_twice_dispatches_once(db, submit):
    job_id, ids = submit(3)
    first = dispatch(db, ids)
    assert sorted((d.request_id, d.job_id, d.attempt) for d in first) == sorted(
        (rid, job_id, 1) for rid in ids
    )
    assert dispatch(db, ids) == []
    assert dispatch(db, ids + ids) == []
    assert dispatch(db, []) == []
    for rid in ids:
        request = get_request(db, rid)
        assert (request.status, request.attempts) == (RequestStatus.DISPATCHED, 1)
        assert request.dispatched_at is not None
    job = get_job(db, job_id)
    assert job.status == JobStatus.RUNNING and job.started_at is not None


def test_mark_dispatched_answers_in_the_order_asked(db, submit):
    _, ids = submit(6)
    asked = ids[::-2] + ids[::2]  # not the order the rows were written in
    assert [d.request_id for d in dispatch(db, asked)] == asked


def test_claim_needs_the_current_attempt_and_a_dispatched_request(db, submit):
    _, (a, b) = submit(2)
    assert claim(db, [(a, 1)]) == {}, "still queued: nothing to claim"
    dispatch(db, [a, b])
    assert claim(db, [(a, 2), (b, 0)]) == {}
    assert statuses(db, get_request(db, a).job_id) == [RequestStatus.DISPATCHED] * 2

    claimed = claim(db, [(a, 1), (b, 7)])
    assert list(claimed) == [(a, 1)]
    got = claimed[(a, 1)]
    assert (got.attempt, got.team_id, got.feature, got.model) == (
        1,
        "product",
        "search",
        "gpt-4o-mini",
    )
    assert got.payload["messages"] == [{"role": "user", "content": "hello 0"}]
    assert got.payload["max_tokens"] == 256
    assert get_request(db, a).status == RequestStatus.RUNNING
    assert get_request(db, a).started_at is not None
    assert claim(db, [(a, 1)]) == {}, "already running"
    assert get_request(db, b).status == RequestStatus.DISPATCHED


# --- finish -------------------------------------------------------------------------------------


def test_finishing_twice_in_two_transactions_records_once(db, submit):
    job_id, ids = submit(2)
    first, _ = running(db, ids)
    assert finish(db, [(first, ok(cost=21))]) == [True]
    assert finish(db, [(first, ok(cost=21))]) == [False]
    assert finish(db, [(first, ok(cost=99, output="other"))]) == [False]

    request = get_request(db, first.request_id)
    assert (request.status, request.output, request.cost_micros) == (
        RequestStatus.SUCCEEDED,
        "hi",
        21,
    )
    assert (request.input_tokens, request.cached_input_tokens, request.output_tokens) == (12, 7, 30)
    assert (request.model_used, request.provider_used, request.latency_ms) == (
        "gpt-4o-mini",
        "sim-openai",
        12,
    )
    rows = ledger(db, job_id)
    assert [(r.request_id, r.attempt, r.cost_micros) for r in rows] == [(first.request_id, 1, 21)]
    assert (rows[0].team_id, rows[0].feature, rows[0].model, rows[0].provider) == (
        "product",
        "search",
        "gpt-4o-mini",
        "sim-openai",
    )
    job = get_job(db, job_id)
    assert (job.n_succeeded, job.n_failed, job.cost_micros) == (1, 0, 21)
    assert (job.input_tokens, job.output_tokens) == (12 + 7, 30)
    assert job.status == JobStatus.RUNNING and job.finished_at is None


def test_finishing_twice_in_one_batch_records_once(db, submit):
    job_id, ids = submit(3)
    a, b, _ = running(db, ids)
    assert finish(db, [(a, ok(cost=5)), (b, ok(cost=7)), (a, ok(cost=5)), (b, failed())]) == [
        True,
        True,
        False,
        False,
    ]
    assert sorted((r.request_id, r.cost_micros) for r in ledger(db, job_id)) == sorted(
        [(a.request_id, 5), (b.request_id, 7)]
    )
    job = get_job(db, job_id)
    assert (job.n_succeeded, job.n_failed, job.cost_micros, job.output_tokens) == (2, 0, 12, 60)
    assert finish(db, []) == []


def test_a_stale_attempt_cannot_finish(db, submit):
    job_id, ids = submit(1)
    (claimed,) = running(db, ids)
    stale = Claimed(
        claimed.request_id,
        claimed.job_id,
        claimed.team_id,
        claimed.feature,
        claimed.model,
        attempt=2,
        payload=claimed.payload,
    )
    assert finish(db, [(stale, ok())]) == [False]
    assert ledger(db, job_id) == []
    assert get_request(db, claimed.request_id).status == RequestStatus.RUNNING
    assert get_job(db, job_id).n_succeeded == 0


def test_a_failed_outcome_counts_as_failed_and_charges_nothing(db, submit):
    job_id, ids = submit(1)
    (claimed,) = running(db, ids)
    assert finish(db, [(claimed, failed())]) == [True]
    request = get_request(db, claimed.request_id)
    assert (request.status, request.error_code) == (RequestStatus.FAILED, "provider_rejected")
    assert ledger(db, job_id) == []
    job = get_job(db, job_id)
    assert (job.n_succeeded, job.n_failed, job.cost_micros) == (0, 1, 0)
    assert job.status == JobStatus.COMPLETED


def test_the_job_completes_exactly_when_its_last_request_finishes(db, submit):
    job_id, ids = submit(3)
    claimed = running(db, ids)
    for i, c in enumerate(claimed):
        job = get_job(db, job_id)
        assert job.status == JobStatus.RUNNING and job.finished_at is None, f"after {i} finished"
        assert finish(db, [(c, ok(cost=10 + i) if i != 1 else failed())]) == [True]
    job = get_job(db, job_id)
    assert job.status == JobStatus.COMPLETED and job.finished_at is not None
    assert job.finished_at >= job.started_at
    assert (job.n_succeeded, job.n_failed, job.n_done, job.n_total) == (2, 1, 3, 3)
    assert job.cost_micros == 10 + 12 == sum(r.cost_micros for r in ledger(db, job_id))
    finished_at = job.finished_at
    assert finish(db, [(claimed[2], ok())]) == [False]
    assert get_job(db, job_id).finished_at == finished_at


def test_a_concurrent_second_writer_of_the_same_attempt_records_nothing(db, submit):
    """Two writers read 'running' for the same attempt; the one whose update finds nothing to
    change must roll back (WriteConflict) and retry, not charge a second time."""
    job_id, ids = submit(2)
    claimed, other = running(db, ids)
    results: list[list[bool]] = []
    calls: list[int] = []

    def second_writer():
        def work(s):
            calls.append(1)
            return transitions.finish_many(s, [(claimed, ok(cost=21)), (other, ok(cost=4))])

        results.append(db.write(work, give_up_after_s=20))

    with db.session() as s:
        assert transitions.finish_many(s, [(claimed, ok(cost=21))]) == [True]
        thread = threading.Thread(target=second_writer)
        thread.start()
        deadline = time.monotonic() + 10
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # it has read 'running' and is blocked on our uncommitted update
    thread.join(timeout=20)
    assert not thread.is_alive()
    assert results == [[False, True]]
    assert len(calls) == 2, "the second writer met a WriteConflict and retried"
    assert sorted((r.request_id, r.cost_micros) for r in ledger(db, job_id)) == sorted(
        [(claimed.request_id, 21), (other.request_id, 4)]
    )
    job = get_job(db, job_id)
    assert (job.n_succeeded, job.cost_micros, job.status) == (2, 25, JobStatus.COMPLETED)


# --- cancel and fail ----------------------------------------------------------------------------


def test_cancel_stops_queued_requests_and_ends_when_the_running_ones_finish(db, submit):
    job_id, ids = submit(4)
    a, b = running(db, ids[:2])
    assert db.write(lambda s: transitions.cancel_job(s, job_id)) == 2
    assert statuses(db, job_id) == [RequestStatus.RUNNING] * 2 + [RequestStatus.CANCELLED] * 2
    job = get_job(db, job_id)
    assert job.status == JobStatus.CANCELLING and job.cancel_requested_at is not None
    assert (job.n_cancelled, job.finished_at) == (2, None)
    assert dispatch(db, ids) == [], "cancelled requests are never dispatched"
    assert db.write(lambda s: transitions.cancel_job(s, job_id)) == 0

    assert finish(db, [(a, ok(cost=3))]) == [True]
    assert get_job(db, job_id).status == JobStatus.CANCELLING
    assert finish(db, [(b, failed())]) == [True]
    job = get_job(db, job_id)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    assert (job.n_succeeded, job.n_failed, job.n_cancelled, job.cost_micros) == (1, 1, 2, 3)
    assert db.write(lambda s: transitions.cancel_job(s, job_id)) == 0
    assert get_job(db, job_id).status == JobStatus.CANCELLED


def test_cancelling_a_queued_job_ends_it_at_once(db, submit):
    job_id, _ = submit(3)
    assert db.write(lambda s: transitions.cancel_job(s, job_id)) == 3
    job = get_job(db, job_id)
    assert job.status == JobStatus.CANCELLED and job.finished_at is not None
    assert (job.n_cancelled, job.n_done) == (3, 3)


def test_cancelling_a_completed_job_changes_nothing(db, submit):
    job_id, ids = submit(1)
    (c,) = running(db, ids)
    finish(db, [(c, ok())])
    before = get_job(db, job_id)
    assert db.write(lambda s: transitions.cancel_job(s, job_id)) == 0
    after = get_job(db, job_id)
    assert (after.status, after.finished_at, after.cancel_requested_at) == (
        JobStatus.COMPLETED,
        before.finished_at,
        None,
    )


def test_fail_queued_fails_once_and_counts_as_failed(db, submit):
    job_id, (a, b, c) = submit(3)

    def fail(rid: str) -> bool:
        failures = [(rid, "no_route", "no provider for it")]
        return db.write(lambda s: transitions.fail_queued(s, failures)) == 1

    assert fail(a) is True
    assert fail(a) is False
    request = get_request(db, a)
    assert (request.status, request.error_code, request.error) == (
        RequestStatus.FAILED,
        "no_route",
        "no provider for it",
    )
    assert request.finished_at is not None and request.attempts == 0
    assert get_job(db, job_id).n_failed == 1

    dispatch(db, [b])
    assert fail(b) is False, "a dispatched request is not failed from the queue"
    with db.session() as s:
        s.execute(
            update(Request).where(Request.id == c).values(status=RequestStatus.WAITING_BUDGET)
        )
    assert fail(c) is True
    job = get_job(db, job_id)
    assert (job.n_failed, job.status, job.finished_at) == (2, JobStatus.RUNNING, None)

    (claimed_b,) = claim(db, [(b, 1)]).values()
    finish(db, [(claimed_b, ok(cost=8))])
    job = get_job(db, job_id)
    assert (job.n_succeeded, job.n_failed, job.cost_micros) == (1, 2, 8)
    assert job.status == JobStatus.COMPLETED
    assert job.finished_at is not None


# --- Database.write -----------------------------------------------------------------------------


def test_write_retries_a_write_conflict_in_a_fresh_transaction(db, submit):
    job_id, _ = submit(1)
    calls: list[str | None] = []

    def work(s):
        calls.append(s.get(Job, job_id).webhook_url)
        s.execute(update(Job).where(Job.id == job_id).values(webhook_url=f"http://x/{len(calls)}"))
        if len(calls) == 1:
            raise WriteConflict("changed meanwhile")
        return "done"

    assert db.write(work) == "done"
    assert calls == [None, None], "the first attempt's update was rolled back"
    assert get_job(db, job_id).webhook_url == "http://x/2"


def test_write_does_not_retry_other_errors(db):
    calls: list[int] = []

    def work(_s):
        calls.append(1)
        raise ValueError("a bug")

    with pytest.raises(ValueError, match="a bug"):
        db.write(work)
    assert calls == [1]


def test_write_raises_a_schema_error_at_once(db, request):
    """A missing table is not a transient failure: it must not be retried for a minute."""
    calls: list[int] = []

    def work(s):
        calls.append(1)
        return s.execute(text("SELECT count(*) FROM no_such_table")).scalar()

    started = time.monotonic()
    with pytest.raises(Exception, match="no_such_table"):
        db.write(work, give_up_after_s=1.5)
    assert calls == [1]
    assert time.monotonic() - started < 0.5


def test_counts_are_consistent_across_the_table(db, submit):
    """Sanity check of the helpers: a job's request rows and counters agree after a mix."""
    job_id, ids = submit(5)
    claimed = running(db, ids[:3])
    finish(db, [(claimed[0], ok(cost=1)), (claimed[1], failed())])
    db.write(lambda s: transitions.cancel_job(s, job_id))
    with db.session() as s:
        query = (
            select(Request.status, func.count())
            .where(Request.job_id == job_id)
            .group_by(Request.status)
        )
        by_status = dict(s.execute(query).all())
    job = get_job(db, job_id)
    assert by_status == {"succeeded": 1, "failed": 1, "running": 1, "cancelled": 2}
    assert (job.n_succeeded, job.n_failed, job.n_cancelled) == (1, 1, 2)
    assert job.status == JobStatus.CANCELLING


def test_attempt_lookups_use_the_primary_key_on_sqlite(tmp_path):
    """SQLite scans the whole table for a row-value IN; the claim and finish lookups must stay
    indexed, or each recorded batch costs time proportional to every request ever stored."""
    database = Database(f"sqlite:///{tmp_path / 'plan.db'}")
    database.migrate()
    executed: list[tuple[str, tuple]] = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        if "requests.attempts" in statement and not executemany:
            executed.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    database.write(lambda s: transitions.claim_many(s, [("req_a", 1), ("req_b", 2)]))
    database.write(lambda s: transitions.finish_many(s, [(claimed_stub("req_a"), failed())]))
    event.remove(database.engine, "before_cursor_execute", capture)
    assert len(executed) == 2
    with database.engine.connect() as conn:
        for statement, parameters in executed:
            plan = " ".join(
                str(row[-1])
                for row in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
            )
            assert "SCAN requests" not in plan, (statement, plan)
    database.dispose()


def claimed_stub(request_id: str) -> Claimed:
    return Claimed(request_id, "job_x", "product", "search", "gpt-4o-mini", 1, {})


def test_held_requests_wait_and_come_back_unless_cancelled(db, submit):
    job_id, (a, b, _) = submit(3)
    assert db.write(lambda s: transitions.hold_for_budget(s, [a, b])) == [a, b]
    assert get_request(db, a).status == RequestStatus.WAITING_BUDGET
    assert db.write(lambda s: transitions.hold_for_budget(s, [a])) == [], "already held"
    db.write(lambda s: transitions.cancel_job(s, job_id))
    assert db.write(lambda s: transitions.release_held(s, [a, b])) == []
    assert get_request(db, a).status == RequestStatus.CANCELLED


def test_a_closed_completion_window_expires_what_never_started(db, submit):
    job_id, (running, held, _queued) = submit(3)
    dispatch(db, [running])
    (claimed,) = claim(db, [(running, 1)]).values()
    db.write(lambda s: transitions.hold_for_budget(s, [held]))
    assert job_id not in db.write(transitions.expire_overdue), "the window (24h) is still open"
    past = utcnow() - timedelta(seconds=1)  # this job's window closed (others' stay open)
    db.write(lambda s: s.execute(update(Job).where(Job.id == job_id).values(expires_at=past)))
    assert db.write(transitions.expire_overdue) == {job_id: 2}
    assert statuses(db, job_id) == ["running", "expired", "expired"]
    job = get_job(db, job_id)
    assert (job.status, job.n_expired) == (JobStatus.RUNNING, 2), "the running one finishes"
    finish(db, [(claimed, ok())])
    job = get_job(db, job_id)
    assert (job.status, job.n_succeeded, job.n_expired) == (JobStatus.COMPLETED, 1, 2)
    assert job_id not in db.write(transitions.expire_overdue), "once"


def test_the_routed_requests_of_a_window_are_read_through_their_index(db, settings):
    """The routes report (and /metrics, the chart) reads finished routed requests by window:
    on SQLite the plan of the very query it runs searches the partial index, not the table."""
    from broker.store.route_stats import route_stats

    if db.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's planner scans a table this small whatever its indexes")
    seen: list[tuple[str, tuple]] = []

    def keep(conn, cursor, statement, parameters, context, executemany):
        seen.append((statement, parameters))

    event.listen(db.engine, "before_cursor_execute", keep)
    try:
        with db.session() as session:
            route_stats(session, settings.config, since=utcnow() - timedelta(days=1))
    finally:
        event.remove(db.engine, "before_cursor_execute", keep)
    [(statement, parameters)] = [s for s in seen if "FROM requests" in s[0]]
    with db.engine.connect() as connection:
        plan = connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters).all()
    assert any("ix_requests_routed_finished" in str(row) for row in plan), plan
