"""End to end with real processes: submit through the API, run on both provider pools, read
results and costs back, and check that the money adds up three ways."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from sqlalchemy import func, select

from broker.client import BrokerClient
from broker.local.processes import wait_until
from broker.local.stack import Stack
from broker.store import Database, LedgerEntry, Request

pytestmark = pytest.mark.e2e


def requests(n: int, models=("gpt-4o-mini", "claude-haiku-4-5")) -> list[dict]:
    return [
        {
            "custom_id": f"r{i}",
            "model": models[i % len(models)],
            "max_tokens": 64,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Summarise item {i}: " + "words " * (i % 17)},
            ],
        }
        for i in range(n)
    ]


def test_a_thousand_requests_over_two_providers(stack: Stack):
    with BrokerClient(stack.api_url, "ib-dev-product") as client:
        job = client.submit_batch(requests(1000), feature="summarization")
        job.wait(timeout=240, poll_interval=0.5)
        assert job.status == "completed"
        assert job.counts.succeeded == 1000 and job.counts.failed == 0
        results = list(job.results())

    assert len(results) == 1000
    assert {r.provider for r in results} == {"sim-openai", "sim-anthropic"}
    for r in results:
        assert r.status == "succeeded" and r.output
        assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0
        assert r.cost_micros > 0 and r.latency_ms is not None and r.attempts == 1
    by_requests = sum(r.cost_micros for r in results)

    db = Database(stack.settings.database_url_or_default)
    with db.session() as s:
        ledger_total = s.scalar(
            select(func.sum(LedgerEntry.cost_micros)).where(LedgerEntry.job_id == job.id)
        )
        ledger_rows = s.scalar(
            select(func.count()).select_from(LedgerEntry).where(LedgerEntry.job_id == job.id)
        )
        stored = s.scalar(select(func.sum(Request.cost_micros)).where(Request.job_id == job.id))
    db.dispose()
    assert job.cost_micros == by_requests == ledger_total == stored
    assert ledger_rows == 1000
    assert job.usage.input_tokens == sum(
        r.usage.input_tokens + r.usage.cached_input_tokens for r in results
    )
    assert job.usage.output_tokens == sum(r.usage.output_tokens for r in results)


def test_malformed_provider_responses_fail_requests_not_workers(stack: Stack):
    """Every provider answers 200 with a broken body: the calls fail with the reason, the
    breakers open instead of hammering them, the workers stay up, and once the bodies are
    whole again the batch finishes: nothing is lost."""
    sim = stack.env["BROKER_SIMULATOR_URL"]
    admin = {"authorization": "Bearer ib-dev-admin"}
    httpx.post(f"{sim}/_sim/config", json={"malformed_rate": 1.0}).raise_for_status()
    try:
        with BrokerClient(stack.api_url, "ib-dev-content") as client:
            job = client.submit_batch(requests(30), feature="translation")

        def a_breaker_opened() -> bool:
            listing = httpx.get(f"{stack.api_url}/v1/admin/breakers", headers=admin).json()
            return any(b["state"] == "open" for b in listing["breakers"])

        wait_until(a_breaker_opened, 30, "a breaker to open on malformed bodies")
    finally:
        httpx.post(f"{sim}/_sim/config", json={"malformed_rate": 0.0}).raise_for_status()
    with BrokerClient(stack.api_url, "ib-dev-content") as client:
        done = client.get_job(job.id).wait(timeout=120)
    assert done.status == "completed" and done.counts.succeeded + done.counts.failed == 30
    results = client_results(stack, "ib-dev-content", job.id)
    broken = [c for r in results for c in r.calls if c.outcome == "malformed_response"]
    assert broken and all(c.error for c in broken), "each broken body is recorded with why"
    for result in results:
        if result.status == "failed":
            assert result.error.code == "malformed_response" and result.error.message
    assert not stack.dead_children()


def client_results(stack: Stack, key: str, job_id: str):
    with BrokerClient(stack.api_url, key) as client:
        return list(client.results(job_id))


def test_cli_submit_status_results(stack: Stack, tmp_path):
    lines = [
        '{"custom_id": "a", "model": "gpt-4.1-nano", '
        '"messages": [{"role": "user", "content": "hi"}]}',
        "{not json",
        '{"custom_id": "b", "model": "gpt-4.1-nano"}',
        (
            '{"custom_id": "c", "method": "POST", "url": "/v1/chat/completions", "body": '
            '{"model": "claude-haiku-4-5", "max_tokens": 20, '
            '"messages": [{"role": "user", "content": "yo"}]}}'
        ),
    ]
    path = tmp_path / "batch.jsonl"
    path.write_text("\n".join(lines) + "\n")
    env = {**stack.env, "BROKER_URL": stack.api_url, "BROKER_API_KEY": "ib-dev-platform"}
    cli = [sys.executable, "-m", "broker.cli"]
    done = subprocess.run(
        [*cli, "submit", str(path), "--feature", "data-extraction", "--wait"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "line 2: not JSON" in done.stderr
    assert "line 3: messages: Field required" in done.stderr
    job_id = done.stdout.strip().splitlines()[-1]

    status = subprocess.run([*cli, "status", job_id], env=env, capture_output=True, text=True)
    assert "completed" in status.stderr and "2/2 done" in status.stderr
    results = subprocess.run([*cli, "results", job_id], env=env, capture_output=True, text=True)
    assert sorted(line.split('"custom_id":"')[1][0] for line in results.stdout.splitlines()) == [
        "a",
        "c",
    ]

    wrong = subprocess.run(
        [*cli, "status", job_id],
        env={**env, "BROKER_API_KEY": "ib-dev-product"},
        capture_output=True,
        text=True,
    )
    assert wrong.returncode == 1 and "no job" in wrong.stderr
