"""JSON logs from a real stack: every process writes parseable lines, and a worker's lines carry
the request and job they are about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select

from broker.client import BrokerClient
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack
from broker.store import Database, Request

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

PROMPT = "Reply to jane.doe@example.com or +44 20 7946 0958 about item {i}"


def json_lines(path: Path) -> list[dict]:
    """Every line of the log that looks like a JSON object, parsed (a line that does not
    parse fails the test, naming the file and the line)."""
    parsed = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("{"):
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError as exc:
                pytest.fail(f"{path.name}:{number} is not JSON ({exc}): {line[:200]}")
    return parsed


def test_json_logs_with_ids_and_redaction(tmp_path):
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'broker.db'}",
        data_dir=tmp_path / "data",
        api_port=free_port(),
        log_format="json",
        redact=True,
    )
    with Stack(settings) as stack:
        with BrokerClient(stack.api_url, "ib-dev-product") as client:
            requests = [
                {
                    "custom_id": f"r{i}",
                    "model": ("gpt-4o-mini", "claude-haiku-4-5")[i % 2],
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": PROMPT.format(i=i)}],
                }
                for i in range(6)
            ]
            job = client.submit_batch(requests, feature="chatbot")
            job.wait(timeout=60, poll_interval=0.2)
            assert job.status == "completed" and job.counts.succeeded == 6
        dead = stack.dead_children()
        assert not dead, f"processes died: {[c.name for c in dead]}"
    # The stack is stopped: every log is complete.

    logs = {path.stem: json_lines(path) for path in sorted(stack.log_dir.glob("*.log"))}
    assert {"api", "scheduler", "worker-sim-openai", "worker-sim-anthropic", "webhooks"} <= set(
        logs
    )
    for name, lines in logs.items():
        for line in lines:
            if name == "simulator":  # not a broker process: uvicorn's own format
                continue
            assert {"ts", "level", "logger", "message", "process"} <= set(line), (name, line)
    assert {line["process"] for line in logs["worker-sim-openai"]} == {"worker"}

    for worker in ("worker-sim-openai", "worker-sim-anthropic"):
        finished = [
            line for line in logs[worker] if line.get("job_id") == job.id and line.get("request_id")
        ]
        assert finished, f"{worker} logged no line with a request_id and job_id"
        line = finished[0]
        assert line["request_id"].startswith("req_") and line["attempt"] >= 1
        assert line["team"] == "product" and line["provider"] == worker.removeprefix("worker-")
    celery_lines = [
        line for lines in logs.values() for line in lines if line["logger"].startswith("celery")
    ]
    assert celery_lines, "Celery's own lines come out as JSON too"

    everything = "".join(p.read_text() for p in stack.log_dir.glob("*.log"))
    assert "jane.doe@example.com" not in everything
    db = Database(settings.database_url_or_default)
    try:
        with db.session() as s:
            payloads = s.scalars(select(Request.payload).where(Request.job_id == job.id)).all()
    finally:
        db.dispose()
    contents = {p["messages"][0]["content"] for p in payloads}
    assert contents == {f"Reply to [email] or [phone] about item {i}" for i in range(6)}
