"""Anthropic Message Batches, the pure parts: reading a create, rendering a batch from its job,
the result lines, and the store reads (paging both ways, deleted batches gone)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from broker.config.broker_toml import load_config
from broker.dropin import message_batches as mb
from broker.errors import InvalidRequest, NotFound
from broker.store import Job, Request

CONFIG = load_config()
T0 = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)


def item(custom_id: str, **params) -> mb.BatchRequestIn:
    body = {
        "model": "claude-haiku-4-5",
        "max_tokens": 32,
        "messages": [{"role": "user", "content": f"hi {custom_id}"}],
        **params,
    }
    return mb.BatchRequestIn(custom_id=custom_id, params=body)


def job(status: str = "queued", team: str = "mb-unit", **fields) -> Job:
    values = dict(
        id="job_" + "ab" * 12,
        team_id=team,
        feature="default",
        priority="medium",
        status=status,
        n_total=3,
        n_succeeded=0,
        n_failed=0,
        n_cancelled=0,
        n_expired=0,
        created_at=T0,
        surface="anthropic",
        surface_meta={"n_requests": 4, "errors": [{"custom_id": "bad", "type":
                      "invalid_request_error", "message": "nope"}]},
    )
    return Job(**{**values, **fields})


def test_ids_round_trip_and_foreign_ids_are_not_found():
    assert mb.batch_id("job_abc") == "msgbatch_abc"
    assert mb.job_id_of("msgbatch_abc") == "job_abc"
    for wrong in ("job_abc", "msgbatch_", "batch_abc"):
        with pytest.raises(NotFound):
            mb.job_id_of(wrong)


def test_invalid_requests_become_errors_and_valid_ones_pass():
    valid, errors = mb.parse_requests(
        [
            item("ok"),
            item("stream", stream=True),
            item("model", model="claude-does-not-exist-9"),
            item("tools", tools=[{"name": "x"}]),
            item("nomax", max_tokens=None),
            item("big", max_tokens=10_000_000),
        ],
        CONFIG,
    )
    assert [r.custom_id for r in valid] == ["ok"]
    by_id = {e["custom_id"]: e for e in errors}
    assert set(by_id) == {"stream", "model", "tools", "nomax", "big"}
    assert by_id["model"]["type"] == "not_found_error"
    assert "requests[2].params.model" in by_id["model"]["message"]
    assert by_id["stream"]["type"] == "invalid_request_error"
    assert "stream" in by_id["stream"]["message"]
    assert "requests[3].params.tools" in by_id["tools"]["message"]


def test_duplicates_or_nothing_valid_fail_the_whole_create():
    with pytest.raises(InvalidRequest, match="duplicate custom_id 'a'") as exc:
        mb.parse_requests([item("a"), item("b"), item("a")], CONFIG)
    assert exc.value.field == "requests[2].custom_id"
    with pytest.raises(InvalidRequest, match="none of the 1 requests is valid"):
        mb.parse_requests([item("x", model="nope")], CONFIG)


def test_custom_id_follows_anthropics_pattern():
    with pytest.raises(ValueError):
        mb.BatchRequestIn(custom_id="has space", params={})
    with pytest.raises(ValueError):
        mb.BatchCreateIn(requests=[])


def test_batch_object_in_progress_then_ended():
    running = mb.batch_object(job("running", n_succeeded=1), "http://b:8000/")
    assert running["processing_status"] == "in_progress"
    assert running["request_counts"] == {
        "processing": 2, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0,
    }
    assert running["created_at"] == "2026-01-02T03:04:05.123456Z"
    assert running["expires_at"] == "2026-01-03T03:04:05.123456Z"
    assert running["results_url"] is None and running["ended_at"] is None

    ended = mb.batch_object(
        job("cancelled", n_succeeded=1, n_cancelled=2, cancel_requested_at=T0,
            finished_at=T0 + timedelta(seconds=5)),
        "http://b:8000/prefix/",
    )
    assert ended["processing_status"] == "ended"
    assert sum(ended["request_counts"].values()) == 4
    assert ended["cancel_initiated_at"] == "2026-01-02T03:04:05.123456Z"
    assert ended["ended_at"] == "2026-01-02T03:04:10.123456Z"
    assert ended["results_url"] == (
        "http://b:8000/prefix/v1/messages/batches/msgbatch_" + "ab" * 12 + "/results"
    )
    assert mb.processing_status(job("cancelling")) == "canceling"


def test_the_batch_object_passes_the_sdks_strict_validation():
    from anthropic.types.messages import MessageBatch

    for status in ("queued", "cancelling", "completed"):
        MessageBatch.model_validate(mb.batch_object(job(status), "http://b/"))


def row(status: str, **fields) -> Request:
    return Request(id="req_ab_0", custom_id=f"c-{status}", status=status, model="m", **fields)


def test_result_lines_cover_every_outcome_and_the_refused_requests():
    from anthropic.types.messages import MessageBatchIndividualResponse

    rows = [
        row("succeeded", output="hello", finish_reason="stop", input_tokens=3, output_tokens=1,
            cached_input_tokens=0, model_used="claude-haiku-4-5", attempts=1),
        row("failed", error_code="context_window_exceeded", error="too long"),
        row("failed", error_code="weird", error=None),
        row("cancelled"),
        row("expired"),
    ]
    lines = [json.loads(x) for x in mb.result_lines(iter(rows), job("completed"))]
    for line in lines:
        MessageBatchIndividualResponse.model_validate(line)
    kinds = [line["result"]["type"] for line in lines]
    assert kinds == ["succeeded", "errored", "errored", "canceled", "expired", "errored"]
    message = lines[0]["result"]["message"]
    assert message["content"] == [{"type": "text", "text": "hello"}]
    assert message["stop_reason"] == "end_turn" and message["usage"]["service_tier"] == "batch"
    assert lines[1]["result"]["error"]["error"]["type"] == "invalid_request_error"
    assert lines[2]["result"]["error"]["error"] == {"type": "api_error", "message": "weird"}
    assert lines[5]["custom_id"] == "bad"
    assert lines[5]["result"]["error"]["request_id"] is None


def test_list_pages_both_ways_and_skips_other_teams_plain_jobs_and_deleted(db):
    ids = [f"job_{i:024x}" for i in range(7)]
    with db.session() as s:
        for i, jid in enumerate(ids):
            s.add(job("completed", id=jid, created_at=T0 + timedelta(seconds=i)))
        s.add(job(id="job_" + "f" * 24, team="mb-other"))
        s.add(job(id="job_" + "e" * 24, surface=None))
    batches = [mb.batch_id(j) for j in ids]
    with db.session() as s:
        mb.mark_deleted(s, "mb-unit", batches[3])
    with db.session() as s:
        with pytest.raises(NotFound):
            mb.get_batch(s, "mb-unit", batches[3])
        with pytest.raises(NotFound):
            mb.get_batch(s, "mb-other", batches[0])
        with pytest.raises(NotFound):
            mb.get_batch(s, "mb-unit", mb.batch_id("job_" + "e" * 24))

        def page(**kw):
            jobs, more = mb.list_batches(s, "mb-unit", chunk=2, **kw)
            return [mb.batch_id(j.id) for j in jobs], more

        newest = batches[::-1]
        newest.remove(batches[3])
        assert page(limit=10) == (newest, False)
        assert page(limit=2) == (newest[:2], True)
        assert page(limit=2, after_id=newest[1]) == (newest[2:4], True)
        assert page(limit=5, after_id=newest[1]) == (newest[2:], False)
        assert page(limit=2, before_id=newest[4]) == (newest[2:4], True)
        assert page(limit=9, before_id=newest[2]) == (newest[:2], False)


def test_deleting_a_batch_still_processing_is_refused(db):
    with db.session() as s:
        s.add(job("running", id="job_" + "c" * 24))
    with db.session() as s, pytest.raises(InvalidRequest, match="cancel it first"):
        mb.mark_deleted(s, "mb-unit", mb.batch_id("job_" + "c" * 24))
