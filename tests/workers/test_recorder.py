"""The recorder (group commit for a worker pool) on a real database, from many threads at once."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from broker.config.broker_toml import load_config
from broker.schemas.http import JobCreate
from broker.states import JobStatus, RequestStatus
from broker.store import Database, Job, LedgerEntry, Request, transitions
from broker.store.transitions import Claimed, Outcome
from broker.submission import Submitter
from workers.recorder import Recorder

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def submit(redis_client):
    """Submit a job of ``n`` requests on ``db`` and dispatch them all (attempt 1)."""
    config = load_config()

    def _submit(db: Database, n: int, dispatch: bool = True) -> tuple[str, list[str]]:
        body = JobCreate(
            feature="classification",
            requests=[
                {
                    "custom_id": f"r{i}",
                    "model": "claude-haiku-4-5",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"label {i}"}],
                }
                for i in range(n)
            ],
        )
        job_id = Submitter(db, redis_client, config).submit(config.team("content"), body).id
        with db.session() as s:
            query = select(Request.id).where(Request.job_id == job_id).order_by(Request.seq)
            ids = list(s.scalars(query))
        if dispatch:
            db.write(lambda s: transitions.mark_dispatched(s, ids))
        return job_id, ids

    return _submit


@pytest.fixture
def recorder(db):
    rec = Recorder(db)
    yield rec
    rec.close()


def outcome(cost: int) -> Outcome:
    return Outcome(
        model="claude-haiku-4-5",
        provider="sim-anthropic",
        latency_ms=5,
        output=f"label-{cost}",
        finish_reason="end_turn",
        input_tokens=10,
        cached_input_tokens=2,
        output_tokens=3,
        cost_micros=cost,
    )


def in_threads(target, n: int) -> list[threading.Thread]:
    """Start ``target(i)`` in ``n`` daemon threads: a caller left hanging by a failing test
    never keeps the interpreter from exiting."""
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    return threads


def join(threads: list[threading.Thread], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), f"callers still waiting after {timeout} s"


def test_200_threads_claim_and_finish_at_once(db, submit, recorder):
    jobs = [submit(db, 120), submit(db, 80)]
    work = [(job_id, seq, rid) for job_id, ids in jobs for seq, rid in enumerate(ids)]
    cost = {rid: 1 + i for i, (_, _, rid) in enumerate(work)}
    start = threading.Barrier(len(work))
    results: list[tuple[Claimed | None, bool] | None] = [None] * len(work)

    def attempt(i: int) -> None:
        rid = work[i][2]
        start.wait(timeout=30)
        claimed = recorder.claim(rid, 1)
        results[i] = (claimed, recorder.finish(claimed, outcome(cost[rid])))

    join(in_threads(attempt, len(work)), timeout=30)

    for (job_id, seq, rid), (claimed, recorded) in zip(work, results):
        assert isinstance(claimed, Claimed) and recorded is True
        assert (claimed.request_id, claimed.job_id, claimed.attempt) == (rid, job_id, 1)
        assert (claimed.team_id, claimed.feature, claimed.model) == (
            "content",
            "classification",
            "claude-haiku-4-5",
        )
        assert claimed.payload["messages"] == [{"role": "user", "content": f"label {seq}"}]
        assert claimed.payload["max_tokens"] == 16

    # a stale claim (already running or finished, or an attempt that never was) gets None
    _, _, rid = work[0]
    assert recorder.claim(rid, 1) is None
    assert recorder.claim(rid, 2) is None
    # a second finish of an attempt already recorded changes nothing
    first_claimed = results[0][0]
    assert recorder.finish(first_claimed, outcome(999)) is False

    with db.session() as s:
        job_ids = [job_id for job_id, _ in jobs]
        charged = s.scalars(select(LedgerEntry.request_id).where(LedgerEntry.job_id.in_(job_ids)))
        assert Counter(charged) == Counter(cost.keys()), "one ledger row per request"
        for job_id, ids in jobs:
            job = s.get(Job, job_id)
            assert job.cost_micros == sum(cost[rid] for rid in ids)
            assert job.cost_micros == s.scalar(
                select(func.sum(LedgerEntry.cost_micros)).where(LedgerEntry.job_id == job_id)
            )
            assert (job.n_succeeded, job.n_failed, job.status) == (len(ids), 0, JobStatus.COMPLETED)
            assert (job.input_tokens, job.output_tokens) == (12 * len(ids), 3 * len(ids))
            statuses = s.scalars(select(Request.status).where(Request.job_id == job_id)).all()
            assert set(statuses) == {RequestStatus.SUCCEEDED}


def test_only_a_dispatched_attempt_is_claimed(db, submit, recorder):
    _, (queued,) = submit(db, 1, dispatch=False)
    assert recorder.claim("no-such-request", 1) is None
    assert recorder.claim(queued, 0) is None
    assert recorder.claim(queued, 1) is None
    db.write(lambda s: transitions.mark_dispatched(s, [queued]))
    claimed = recorder.claim(queued, 1)
    assert claimed is not None and claimed.attempt == 1
    failure = Outcome(
        model="claude-haiku-4-5",
        provider="sim-anthropic",
        latency_ms=1,
        error_code="provider_rejected",
        error="no",
    )
    assert recorder.finish(claimed, failure) is True
    with db.session() as s:
        assert s.get(Request, queued).status == RequestStatus.FAILED
        charged = select(func.count()).where(LedgerEntry.request_id == queued)
        assert s.scalar(charged) == 0


def test_close_returns_promptly(db, submit):
    recorder = Recorder(db)
    _, ids = submit(db, 3)
    for rid in ids:
        recorder.finish(recorder.claim(rid, 1), outcome(1))
    started = time.monotonic()
    recorder.close()
    assert time.monotonic() - started < 1

    idle = Recorder(db)
    started = time.monotonic()
    idle.close()
    assert time.monotonic() - started < 1


@pytest.mark.parametrize(
    ("attempts", "current"),
    [((1, 1), 1), ((1, 2), 2)],
    ids=["same-attempt-twice", "stale-and-current-attempt"],
)
def test_claims_of_one_request_in_one_batch_have_one_winner(
    db, submit, recorder, attempts, current
):
    _, (blocker, target) = submit(db, 2)
    if current == 2:  # attempt 1 went back to the queue and was dispatched again
        with db.session() as s:
            s.execute(
                update(Request).where(Request.id == target).values(status=RequestStatus.QUEUED)
            )
        assert db.write(lambda s: transitions.mark_dispatched(s, [target]))[0].attempt == 2

    results: dict[int, Claimed | None] = {}

    def claim(i: int) -> None:
        results[i] = recorder.claim(target, attempts[i])

    with db.session() as s:
        # Until this commits, the recorder's next write waits on us (a row lock on PostgreSQL,
        # the write lock on SQLite), so the two claims after it gather into one batch.
        s.execute(update(Request).where(Request.id == blocker).values(latency_ms=0))
        first = in_threads(lambda _: recorder.claim(blocker, 1), 1)
        time.sleep(0.3)  # the writer has taken that claim and waits for our lock
        claims = in_threads(claim, 2)
        time.sleep(0.3)  # both claims wait in the queue
    join(first + claims, timeout=10)
    assert len(results) == 2
    winners = {i: c for i, c in results.items() if c is not None}
    assert len(winners) == 1, f"both claims won: {results}"
    (claimed,) = winners.values()
    assert claimed.attempt == current
    if current == 2:
        assert results[0] is None, "the stale attempt 1 must not be handed attempt 2"


def test_a_database_error_reaches_every_waiting_caller(tmp_path, submit):
    """A private SQLite file whose requests table refuses every update (a trigger)."""
    private = Database(f"sqlite:///{tmp_path / 'refusing.db'}")
    private.migrate()
    _, ids = submit(private, 40)
    with private.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse BEFORE UPDATE ON requests "
            "BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END"
        )
    recorder = Recorder(private)
    errors: dict[int, BaseException | None] = {}

    def claim(i):
        try:
            recorder.claim(ids[i], 1)
            errors[i] = None
        except BaseException as exc:
            errors[i] = exc

    join(in_threads(claim, len(ids)), timeout=10)
    assert len(errors) == len(ids)
    for error in errors.values():
        assert isinstance(error, IntegrityError) and "refused by trigger" in str(error)

    # the writer survived the failure: once the fault is gone, it records again
    with private.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse")
    claimed = recorder.claim(ids[0], 1)
    assert claimed is not None and recorder.finish(claimed, outcome(4)) is True
    started = time.monotonic()
    recorder.close()
    assert time.monotonic() - started < 1
    private.dispose()


def test_an_unmigrated_database_fails_the_callers_promptly(tmp_path):
    empty = Database(f"sqlite:///{tmp_path / 'empty.db'}")
    recorder = Recorder(empty)
    errors: list[BaseException] = []

    def claim(_):
        try:
            recorder.claim("r-1", 1)
        except BaseException as exc:
            errors.append(exc)

    join(in_threads(claim, 5), timeout=3)
    assert len(errors) == 5
    assert all(isinstance(e, OperationalError) and "no such table" in str(e) for e in errors)
