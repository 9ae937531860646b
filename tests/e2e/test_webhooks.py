"""Signed job webhooks with real processes: a stack (API, scheduler, worker pools, the webhooks
worker) on SQLite and a real HTTP receiver on 127.0.0.1, allowlisted in ``[webhooks]``."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import defaultdict
from collections.abc import Iterator

import httpx
import pytest

from broker.client import (
    BrokerClient,
    InvalidRequestError,
    WebhookVerificationError,
    verify_webhook,
)
from broker.config.broker_toml import hash_api_key
from broker.config.settings import DEV_WEBHOOK_SECRET
from broker.local.chaos import TEAM_KEY, ChaosStack
from broker.webhooks.signing import derive_team_secret

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

OTHER_KEY = "ib-other-team"
WEBHOOKS_TOML = f"""
[webhooks]
first_retry_s = 0.5
allow_private_hosts = ["127.0.0.1"]

[[teams]]
id = "other"
api_key_sha256 = "{hash_api_key(OTHER_KEY)}"
"""
SECRET = derive_team_secret(DEV_WEBHOOK_SECRET, "chaos")  # the dev stack's secret for "chaos"


class Receiver:
    """A threaded HTTP server that records every POST and answers each path's scripted codes
    in turn (then 200)."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[dict[str, str], bytes, int]]] = defaultdict(list)
        self.script: dict[str, list[int]] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                codes = receiver.script.get(self.path, [])
                code = codes.pop(0) if codes else 200
                receiver.received[self.path].append((dict(self.headers), body, code))
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def wait(self, path: str, n: int, timeout: float = 30) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.received[path]) >= n:
                return self.received[path]
            time.sleep(0.1)
        raise AssertionError(f"{path}: {len(self.received[path])} of {n} POSTs in {timeout} s")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def chaos(tmp_path_factory) -> Iterator[ChaosStack]:
    workdir = tmp_path_factory.mktemp("webhooks")
    with ChaosStack(workdir, None, {"latency_ms": 5}, extra_toml=WEBHOOKS_TOML) as running:
        yield running
        assert not running.stack.dead_children()


def deliveries(chaos: ChaosStack, job_id: str, key: str = TEAM_KEY) -> httpx.Response:
    return httpx.get(
        f"{chaos.stack.api_url}/v1/jobs/{job_id}/webhooks",
        headers={"authorization": f"Bearer {key}"},
        timeout=10,
    )


@pytest.fixture(scope="module")
def finished(chaos: ChaosStack, receiver: Receiver):
    """One job of 5 requests with a webhook, and the POST it got."""
    job_id = chaos.submit(5, webhook_url=receiver.url("/ok"))
    [(headers, body, _)] = receiver.wait("/ok", 1)
    return job_id, headers, body


def test_the_webhook_arrives_signed_with_the_counts_and_cost(chaos, finished):
    job_id, headers, body = finished
    event = verify_webhook(body, headers, SECRET)
    with BrokerClient(chaos.stack.api_url, TEAM_KEY) as client:
        job = client.get_job(job_id)
    assert event["type"] == "job.finished" and event["id"] == headers["webhook-id"]
    data = event["data"]
    assert data["job_id"] == job_id and data["status"] == "completed"
    assert data["counts"] == job.counts.model_dump()
    assert data["counts"]["succeeded"] == 5
    assert data["cost_micros"] == job.cost_micros > 0 and data["cost_usd"] == job.cost_usd
    assert data["results_url"] == f"{chaos.stack.api_url}/v1/jobs/{job_id}/results"
    assert SECRET not in json.dumps(headers) and SECRET.encode() not in body


def test_a_tampered_body_or_a_replayed_timestamp_fails_verification(finished):
    _, headers, body = finished
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(body.replace(b'"completed"', b'"cancelled"'), headers, SECRET)
    replay_at = int(headers["webhook-timestamp"]) + 600
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(body, headers, SECRET, now=replay_at)
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(body, headers, "not-the-secret")


def test_500_twice_then_200_is_one_delivery_in_three_attempts(chaos, receiver):
    receiver.script["/flaky"] = [500, 500]
    job_id = chaos.submit(3, webhook_url=receiver.url("/flaky"))
    posts = receiver.wait("/flaky", 3, timeout=60)
    time.sleep(1.0)  # nothing more comes after the 200
    assert [code for *_, code in receiver.received["/flaky"]] == [500, 500, 200]
    assert len({h["webhook-id"] for h, *_ in posts}) == 1, "the same delivery id every time"
    for headers, body, _ in posts:
        verify_webhook(body, headers, SECRET)
    deadline = time.monotonic() + 10
    while True:  # the 200 is recorded just after it is answered
        [delivery] = deliveries(chaos, job_id).json()["data"]
        if delivery["status"] == "delivered" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert delivery["status"] == "delivered" and delivery["id"] == posts[0][0]["webhook-id"]
    assert [(a["attempt"], a["status_code"]) for a in delivery["attempts"]] == [
        (1, 500),
        (2, 500),
        (3, 200),
    ]
    assert delivery["last_status_code"] == 200 and delivery["delivered_at"]


def test_another_teams_job_is_404_and_a_private_url_is_refused(chaos, finished):
    job_id, *_ = finished
    logs = (chaos.stack.log_dir / "webhooks.log").read_text()
    assert "webhook delivery" in logs and job_id in logs and "status_code=200" in logs
    assert SECRET not in logs and DEV_WEBHOOK_SECRET not in logs
    assert deliveries(chaos, job_id, key="ib-nobody").status_code == 401
    assert deliveries(chaos, job_id, key=OTHER_KEY).status_code == 404
    assert deliveries(chaos, "job_no_such").status_code == 404
    with pytest.raises(InvalidRequestError) as err:
        chaos.submit(1, webhook_url="http://10.1.2.3/hook")
    assert err.value.status_code == 400 and err.value.field == "webhook_url"
