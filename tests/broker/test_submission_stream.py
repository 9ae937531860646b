"""A batch streamed from its source (an uploaded file) is written a slice at a time in one
transaction: every request lands in order, the source is read as the rows are written (never
held whole), cached answers are hits in any slice, and a failure leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import event, func, select

from broker import redis_keys
from broker.errors import InvalidRequest
from broker.schemas.http import JobCreate, RequestIn
from broker.store import Job, Request
from broker.submission import INSERT_SLICE, Stream, Submitter, payload_of, tokens_of

N = INSERT_SLICE * 2 + 7  # three slices, the last one short


def request(i: int, model: str = "gpt-4o-mini") -> RequestIn:
    return RequestIn(
        custom_id=f"r{i}", model=model, messages=[{"role": "user", "content": f"stream {i}"}]
    )


def stream_of(requests: list[RequestIn], read: list[int] | None = None) -> Stream:
    def reading() -> Iterator[RequestIn]:
        for one in requests:
            if read is not None:
                read.append(1)
            yield one

    tokens = sum(tokens_of(r, payload_of(r)) for r in requests)
    return Stream(len(requests), tokens, reading())


def counts(db) -> tuple[int, int]:
    with db.session() as s:
        return (
            s.scalar(select(func.count()).select_from(Request)),
            s.scalar(select(func.count()).select_from(Job)),
        )


def queued(client) -> int:
    return sum(client.llen(k) for k in client.keys(redis_keys.team_queue_prefix() + "*"))


@pytest.fixture
def submitter(db, redis_client, settings) -> Submitter:
    return Submitter(db, redis_client, settings.config)


def test_every_request_lands_in_order_and_is_queued(submitter, db, redis_client, settings):
    team = settings.config.team("product")
    job = submitter.submit_stream(
        team, JobCreate(feature="search", requests=[]), stream_of([request(i) for i in range(N)])
    )
    with db.session() as s:
        of_job = select(Request.seq, Request.custom_id).where(Request.job_id == job.id)
        rows = s.execute(of_job.order_by(Request.seq)).all()
        assert s.get(Job, job.id).n_total == N
    assert [(seq, cid) for seq, cid in rows] == [(i, f"r{i}") for i in range(N)]
    assert queued(redis_client) == N


def test_the_source_is_read_as_the_rows_are_written(submitter, db, settings):
    read: list[int] = []
    read_at_insert: list[int] = []

    def count(conn, cursor, statement, *_):
        if statement.lstrip().upper().startswith("INSERT INTO REQUESTS"):
            read_at_insert.append(len(read))

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        submitter.submit_stream(
            settings.config.team("product"),
            JobCreate(feature="search", requests=[]),
            stream_of([request(i) for i in range(N)], read),
        )
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert len(read_at_insert) == 3
    # The first slice was written when little more than one slice had been read.
    assert read_at_insert[0] <= INSERT_SLICE + 1
    assert read_at_insert[-1] == N


def test_a_bad_request_in_a_late_slice_leaves_nothing(submitter, db, redis_client, settings):
    requests = [request(i) for i in range(N)]
    requests[-1] = RequestIn(custom_id="late", messages=[{"role": "user", "content": "hi"}])
    before = counts(db)
    with pytest.raises(InvalidRequest, match="no model at requests"):
        submitter.submit_stream(
            settings.config.team("product"),
            JobCreate(feature="search", requests=[]),
            stream_of(requests),
        )
    assert counts(db) == before
    assert queued(redis_client) == 0


def test_a_source_shorter_than_it_said_fails_whole(submitter, db, settings):
    requests = [request(i) for i in range(10)]
    stream = stream_of(requests)
    short = Stream(11, stream.tokens, stream.requests)
    before = counts(db)
    with pytest.raises(InvalidRequest, match="held 10 requests, not the 11"):
        submitter.submit_stream(
            settings.config.team("product"), JobCreate(feature="search", requests=[]), short
        )
    assert counts(db) == before


class AskedSemantic:
    """A semantic cache that finds nothing and remembers which requests it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def lookup(self, queries) -> dict:
        self.asked.extend(q.request_id for q in queries)
        return {}


def test_a_streamed_batch_under_a_semantic_policy_asks_the_semantic_cache(
    db, redis_client, settings
):
    semantic = AskedSemantic()
    submitter = Submitter(db, redis_client, settings.config, semantic=semantic)
    team = settings.config.team("product")
    job = submitter.submit_stream(
        team, JobCreate(feature="chatbot", requests=[]), stream_of([request(i) for i in range(N)])
    )
    assert sorted(semantic.asked) == sorted(
        f"req_{job.id.removeprefix('job_')}_{i}" for i in range(N)
    )
