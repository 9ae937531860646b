"""OpenAI batch lines in, batch objects and result lines out: pure functions, no processes."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from broker.dropin import files
from broker.dropin.openai_batches import (
    batch_id,
    batch_object,
    error_line,
    generated_of,
    job_id_of,
    output_file_id,
    output_line,
    parse_lines,
    render_file,
    too_many_inputs,
)
from broker.errors import InvalidRequest
from broker.store import Job, Request

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
URL = "/v1/chat/completions"


def line(custom_id, content="hi", url=URL, model="gpt-4o-mini", **extra) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    item = {"custom_id": custom_id, "method": "POST", "url": url, "body": body}
    return json.dumps(item).encode() + b"\n"


def numbered(*lines: bytes) -> list[tuple[int, bytes]]:
    return list(enumerate(lines, start=1))


def test_good_and_bad_lines_are_told_apart_naming_the_line():
    def check(request):
        if request.model != "gpt-4o-mini":
            raise InvalidRequest(f"unknown model {request.model!r}", field="body.model")

    parsed = parse_lines(
        numbered(
            line("a"),
            b"{not json\n",
            line("a", "again"),
            line("c", url="/v1/embeddings"),
            line("d", model="nope"),
            line("e", logprobs=True),
            b"[1, 2]\n",
            line("f", max_tokens=7),
            line("g", top_p=0.5, stop="##", seed=3, response_format={"type": "json_object"}),
            line("h", stop=["a", "b", "c", "d", "e"]),
        ),
        URL,
        check,
    )
    assert [r.custom_id for r in parsed.requests] == ["a", "f", "g"]
    assert parsed.requests[1].max_tokens == 7
    assert parsed.requests[2].chat_parameters() == {
        "top_p": 0.5,
        "stop": ["##"],
        "seed": 3,
        "response_format": {"type": "json_object"},
    }
    by_line = {e["line"]: e for e in parsed.errors}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 7, 10]
    assert by_line[2]["code"] == "invalid_json_line" and by_line[2]["custom_id"] is None
    assert by_line[3]["code"] == "duplicate_custom_id"
    assert by_line[4]["param"] == "url"
    assert "unknown model 'nope'" in by_line[5]["message"] and by_line[5]["custom_id"] == "d"
    assert by_line[6]["param"] == "body.logprobs"
    assert by_line[10]["param"] == "body.stop" and "at most 4" in by_line[10]["message"]
    assert all(e["message"].startswith(f"line {n}:") for n, e in by_line.items())


def test_ids_round_trip():
    job_id = "job_" + "ab" * 12
    assert job_id_of(batch_id(job_id)) == job_id
    assert job_id_of("file-x") is None
    assert generated_of(output_file_id(job_id, "output")) == (job_id, "output")
    assert generated_of(output_file_id(job_id, "errors")) == (job_id, "errors")
    assert generated_of("file-" + "ab" * 12) is None


def job(**kw) -> Job:
    fields = dict(
        id="job_" + "cd" * 12,
        team_id="t",
        feature="default",
        priority="medium",
        status="running",
        n_total=3,
        n_succeeded=0,
        n_failed=0,
        n_cancelled=0,
        n_expired=0,
        input_tokens=10,
        output_tokens=5,
        cost_micros=0,
        created_at=T0,
        surface="openai",
        surface_meta={
            "endpoint": URL,
            "input_file_id": "file-1",
            "completion_window": "24h",
            "metadata": {"k": "v"},
            "created": int(T0.timestamp()),
            "errors": [
                {
                    "line": 2,
                    "custom_id": None,
                    "code": "invalid_json_line",
                    "message": "line 2: not valid JSON",
                    "param": None,
                }
            ],
        },
    )
    fields.update(kw)
    return Job(**fields)


def test_a_running_batch():
    obj = batch_object(job(), cached_tokens=4)
    assert obj["status"] == "in_progress" and obj["id"] == "batch_" + "cd" * 12
    assert obj["output_file_id"] is None and obj["error_file_id"] is None
    assert obj["request_counts"] == {"total": 4, "completed": 0, "failed": 1}
    assert obj["expires_at"] == obj["created_at"] + 86400
    assert obj["usage"]["total_tokens"] == 15
    assert obj["usage"]["input_tokens_details"] == {"cached_tokens": 4}
    assert obj["errors"] is None and obj["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    ("status", "counts", "expected"),
    [
        ("completed", dict(n_succeeded=2, n_failed=1), "completed"),
        ("completed", dict(n_expired=3), "expired"),
        ("cancelling", dict(), "cancelling"),
        ("cancelled", dict(n_succeeded=1, n_cancelled=2), "cancelled"),
    ],
)
def test_status_mapping(status, counts, expected):
    obj = batch_object(job(status=status, finished_at=T0 + timedelta(minutes=1), **counts))
    assert obj["status"] == expected
    if expected != "cancelling":
        assert obj["error_file_id"] is not None  # the bad line at least


def test_a_failed_batch_lists_its_errors():
    failed = job(status="completed", n_total=0)
    failed.surface_meta = {**failed.surface_meta, "failed": True}
    obj = batch_object(failed)
    assert obj["status"] == "failed" and obj["failed_at"] == obj["created_at"]
    assert obj["errors"]["data"][0]["line"] == 2
    assert obj["request_counts"] == {"total": 1, "completed": 0, "failed": 1}


def test_an_embeddings_batch_over_fifty_thousand_inputs_fails_as_a_whole():
    assert too_many_inputs(50_000) is None
    error = too_many_inputs(50_001)
    assert error["code"] == "too_many_inputs" and "50,001" in error["message"]
    failed = job(status="completed", n_total=0)
    failed.surface_meta = {**failed.surface_meta, "failed": True, "errors": [error]}
    obj = batch_object(failed)
    assert obj["status"] == "failed" and obj["errors"]["data"][0]["line"] is None
    assert obj["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert obj["error_file_id"] is None  # no line failed: nothing to write


def row(seq: int, status: str, **kw) -> Request:
    return Request(
        id=f"req_{'cd' * 12}_{seq}",
        job_id="job_" + "cd" * 12,
        seq=seq,
        custom_id=f"c{seq}",
        status=status,
        model="gpt-4o-mini",
        created_at=T0,
        finished_at=T0,
        **kw,
    )


def test_result_lines():
    ok = output_line(row(0, "succeeded", output="4", input_tokens=3, output_tokens=1))
    assert ok["response"]["status_code"] == 200
    assert ok["response"]["body"]["choices"][0]["message"]["content"] == "4"
    failed = error_line(row(1, "failed", error_code="context_window_exceeded", error="too long"))
    assert failed["response"]["status_code"] == 400 and failed["error"] is None
    assert failed["response"]["body"]["error"]["message"] == "too long"
    assert error_line(row(2, "expired"))["error"]["code"] == "batch_expired"
    assert error_line(row(3, "cancelled"))["error"]["code"] == "batch_cancelled"
    assert output_line(row(4, "failed")) is None and error_line(row(5, "succeeded")) is None
    rows = [row(0, "succeeded", output="x"), row(1, "expired")]
    errors = [json.loads(b) for b in render_file(job(), "errors", rows)]
    assert [e["custom_id"] for e in errors] == [None, "c1"]
    assert errors[0]["response"]["status_code"] == 400
    assert len(list(render_file(job(), "output", rows))) == 1


def test_save_counts_and_limits(tmp_path, monkeypatch):
    saved = files.save(io.BytesIO(b"a\nb\nc"), tmp_path, "file-x")
    assert (saved.bytes, saved.lines) == (5, 3)
    assert list(files.iter_lines(tmp_path / "file-x")) == [(1, b"a\n"), (2, b"b\n"), (3, b"c")]
    monkeypatch.setattr(files, "MAX_LINES", 2)
    with pytest.raises(InvalidRequest, match="lines"):
        files.save(io.BytesIO(b"a\nb\nc\n"), tmp_path, "file-y")
    monkeypatch.setattr(files, "MAX_BYTES", 3)
    with pytest.raises(InvalidRequest, match="bytes"):
        files.save(io.BytesIO(b"abcd"), tmp_path, "file-z")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file-x"]
