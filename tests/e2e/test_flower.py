"""Flower against a real stack: it sees the provider queues and the worker pools, shows the
tasks when task events are on, and keeps its API behind basic auth."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from broker.client import BrokerClient
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack

pytestmark = pytest.mark.e2e

USER, PASSWORD = "ops", "not:a-dev-secret"  # a colon in the password is kept as it is
QUEUES = {"provider.sim-openai", "provider.sim-anthropic"}


def poll(get: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = 20) -> Any:
    """``get()`` until ``ok`` says yes; the last value (for the assertion message) if never."""
    deadline = time.monotonic() + timeout
    while True:
        value = get()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


# One database kind is enough here: Flower reads Redis and the workers, not the result store.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_flower_sees_queues_workers_and_tasks_behind_basic_auth(fresh_database_url, tmp_path):
    settings = Settings(
        database_url=fresh_database_url,
        data_dir=tmp_path,
        api_port=free_port(),
        flower_basic_auth=f"{USER}:{PASSWORD}",
    )  # task events unset: the workers start without them and Flower turns them on
    with Stack(settings, flower_port=free_port()) as stack:
        with httpx.Client(base_url=stack.flower_url, auth=(USER, PASSWORD), timeout=10) as flower:

            def workers() -> dict:
                return flower.get("/api/workers", params={"refresh": 1}).raise_for_status().json()

            def pools(found: dict) -> set[str]:
                return {name.split("@")[0] for name in found}

            found = poll(workers, lambda w: {"sim-openai", "sim-anthropic"} <= pools(w))
            assert {"sim-openai", "sim-anthropic"} <= pools(found), found

            lengths = flower.get("/api/queues/length").raise_for_status().json()
            listed = {q["name"]: q["messages"] for q in lengths["active_queues"]}
            assert QUEUES <= set(listed), lengths
            assert all(isinstance(listed[q], int) for q in QUEUES)

            def tasks() -> dict:
                return flower.get("/api/tasks").raise_for_status().json()

            def named(found: dict) -> list[dict]:
                # Events are switched on while tasks run: a task whose 'received' event came
                # before that shows as a nameless success. Count the ones Flower saw whole.
                return [x for x in found.values() if x["state"] == "SUCCESS" and x.get("name")]

            def succeeded(found: dict) -> int:
                return len(named(found))

            deadline = time.monotonic() + 60
            while succeeded(seen := tasks()) < 20 and time.monotonic() < deadline:
                submit_and_wait(stack, 20)  # events flow once Flower's request reached the pools
            done = named(seen)
            assert len(done) >= 20, f"task events reached Flower for {len(done)} of 20 tasks"
            assert {t["name"] for t in done} <= {"workers.execute", "workers.execute_many"}
            # Each shows the requests it ran: one ticket, or the id/attempt of each.
            assert all("request_id" in t["kwargs"] or "tickets" in t["kwargs"] for t in done)

        assert httpx.get(f"{stack.flower_url}/api/workers").status_code == 401
        wrong = httpx.get(f"{stack.flower_url}/api/queues/length", auth=(USER, "guess"))
        assert wrong.status_code == 401
        assert not stack.dead_children()


def submit_and_wait(stack: Stack, n: int) -> None:
    with BrokerClient(stack.api_url, "ib-dev-product") as client:
        batch = [
            {
                "custom_id": f"f{i}",
                "model": ("gpt-4o-mini", "claude-haiku-4-5")[i % 2],
                "max_tokens": 16,
                # new questions each time: repeats would be answered by the cache, no task run
                "messages": [{"role": "user", "content": f"hello {i} ({uuid.uuid4().hex})"}],
            }
            for i in range(n)
        ]
        job = client.submit_batch(batch, feature="search").wait(timeout=60)
    assert job.counts.succeeded == n


def test_flower_refuses_to_listen_beyond_loopback_without_auth(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "BROKER_FLOWER_BASIC_AUTH"}
    env["BROKER_DATA_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "broker.cli", "flower", "--address", "0.0.0.0"],
        env=env,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "without authentication" in done.stderr
    assert "BROKER_FLOWER_BASIC_AUTH" in done.stderr
    assert "Traceback" not in done.stderr
