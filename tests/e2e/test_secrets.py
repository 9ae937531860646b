"""Secrets stay secret, with real processes on SQLite: a provider key and a webhook secret are
planted in the stack's environment, used (the simulator answers only the planted key; webhooks
are signed with the planted secret), then looked for everywhere the broker writes or answers:
every file under the stack's data directory (logs, database, Redis) and every API response
body, including a phase where the provider refuses the key (401s, breakers opening, requests
failing with the provider's message)."""

from __future__ import annotations

import http.server
import json
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from broker.client import BrokerClient, verify_webhook
from broker.config.settings import Settings
from broker.local.chaos import ADMIN_KEY, CHAOS_TOML, TEAM_KEY
from broker.local.processes import free_port
from broker.local.stack import Stack
from broker.webhooks.signing import derive_team_secret

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

KEY_ENV = "TEST_PROVIDER_KEY"
PROVIDER_KEY = f"sk-planted-{secrets.token_hex(16)}"
WEBHOOK_SECRET = f"whsec-planted-{secrets.token_hex(16)}"
TEAM_SECRET = derive_team_secret(WEBHOOK_SECRET, "chaos")  # what team "chaos" signs with
SECRETS = {"provider key": PROVIDER_KEY, "webhook secret": WEBHOOK_SECRET,
           "team webhook secret": TEAM_SECRET}  # fmt: skip

#: The chaos config with both simulated providers keyed (like real ones), auth failures
#: opening breakers for 2 s instead of 60, and a webhook receiver on 127.0.0.1.
SECRETS_TOML = (
    CHAOS_TOML.replace('kind = "simulated"\n', f'kind = "simulated"\napi_key_env = "{KEY_ENV}"\n')
    + """
[breakers]
unavailable_s = 2
open_s = 1

[webhooks]
first_retry_s = 0.5
allow_private_hosts = ["127.0.0.1"]
"""
)


def leaks(text: str | bytes) -> list[str]:
    """Which planted secrets ``text`` holds: whole, or any 8 characters of their random part
    (so a masked echo like ``sk-****abcd`` passes, a half key does not)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    found = []
    for name, secret in SECRETS.items():
        tail = secret.rsplit("-", 1)[-1]
        if secret in text or any(tail[i : i + 8] in text for i in range(len(tail) - 7)):
            found.append(name)
    return found


class Receiver:
    """A webhook receiver on 127.0.0.1: answers each path's scripted codes in turn, then 200."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, str], bytes]] = []
        self.script: dict[str, list[int]] = {}
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                receiver.posts.append((self.path, dict(self.headers), body))
                codes = receiver.script.get(self.path, [])
                self.send_response(codes.pop(0) if codes else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Api:
    """Raw HTTP calls to the stack's API, keeping every response body."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.bodies: list[tuple[str, str]] = []

    def get(self, path: str, key: str = TEAM_KEY, **params) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        resp = httpx.get(self.url + path, params=params, headers=headers, timeout=30)
        self.bodies.append((f"GET {path} {params}", resp.text))
        assert resp.status_code == 200, f"{path}: {resp.status_code} {resp.text}"
        return resp

    def job_done(self, job_id: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("completed", "cancelled") or time.monotonic() > deadline:
                return job
            time.sleep(0.3)


def sim(stack: Stack, **changes) -> dict:
    resp = httpx.post(f"{stack.env['BROKER_SIMULATOR_URL']}/_sim/config", json=changes, timeout=5)
    resp.raise_for_status()
    return resp.json()


def sim_statuses(stack: Stack) -> dict[str, int]:
    url = f"{stack.env['BROKER_SIMULATOR_URL']}/_sim/stats"
    return httpx.get(url, timeout=5).json()["responses"]["by_status"]


def webhook_counts(api: Api) -> dict[str, float]:
    text = api.get("/metrics", key=ADMIN_KEY).text
    [family] = [f for f in text_string_to_metric_families(text)
                if f.name == "inference_broker_webhook_deliveries"]  # fmt: skip
    return {s.labels["outcome"]: s.value for s in family.samples if s.name.endswith("_total")}


def batch(n: int, tag: str) -> list[dict]:
    return [
        {"custom_id": f"{tag}{i}", "model": "gpt-4o-mini", "max_tokens": 16,
         "messages": [{"role": "user", "content": f"Classify ticket {tag}{i}: printer on fire"}]}
        for i in range(n)
    ]  # fmt: skip


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("secrets")
    config_path = workdir / "broker.toml"
    config_path.write_text(SECRETS_TOML)
    assert SECRETS_TOML.count(f'api_key_env = "{KEY_ENV}"') == 2
    settings = Settings(
        config_path=config_path,
        data_dir=workdir / "data",
        api_port=free_port(),
        # Not in extra_env: the stack passes its settings as BROKER_* and they win.
        webhook_secret=SecretStr(WEBHOOK_SECRET),
    )
    env = {KEY_ENV: PROVIDER_KEY, "BROKER_SIM_API_KEY": PROVIDER_KEY, "BROKER_SIM_LATENCY_MS": "5"}
    with Stack(settings, extra_env=env) as running:
        yield running
        assert not running.dead_children()


def test_the_planted_secrets_are_used_and_appear_nowhere(stack: Stack, receiver: Receiver):
    api = Api(stack.api_url)
    hook = {"webhook_events": ["job.finished", "request.finished"]}

    with BrokerClient(stack.api_url, TEAM_KEY, timeout=60) as client:
        # 1. The key works: the simulator answers only the planted one.
        good = client.submit_batch(batch(12, "a"), feature="chaos",
                                   webhook_url=receiver.url("/good"), **hook).id  # fmt: skip
        first = api.job_done(good, timeout=30)
        assert first["status"] == "completed" and first["counts"]["succeeded"] == 12, first

        # 2. The provider refuses it: 401s, breakers open for 2 s, requests fail.
        sim(stack, api_key="sk-other-0000000000000000")
        receiver.script["/refused"] = [500]  # one webhook retry, too
        refused = client.submit_batch(batch(6, "b"), feature="chaos",
                                      webhook_url=receiver.url("/refused"), **hook).id  # fmt: skip
        second = api.job_done(refused, timeout=30)
        sim(stack, api_key=PROVIDER_KEY)
        assert second["status"] == "completed", second
        assert second["counts"]["failed"] > 0, "the wrong key made requests fail"

        # 3. The key is restored: everything goes through again, after the breakers' 2 s.
        time.sleep(2.5)
        again = client.submit_batch(batch(12, "c"), feature="chaos",
                                    webhook_url=receiver.url("/again"), **hook).id  # fmt: skip
        third = api.job_done(again, timeout=40)
        assert third["status"] == "completed" and third["counts"]["succeeded"] == 12, third

    statuses = sim_statuses(stack)
    assert statuses.get("200", 0) >= 24 and statuses.get("401", 0) > 0, statuses

    # Everything the API answers, with every result's calls (errors included).
    failed_calls = []
    for job_id in (good, refused, again):
        api.get(f"/v1/jobs/{job_id}")
        results = api.get(f"/v1/jobs/{job_id}/results", limit=1000).json()["data"]
        failed_calls += [c for r in results for c in r["calls"] if c.get("error")]
        api.get(f"/v1/jobs/{job_id}/results", format="jsonl")
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:  # the webhooks, the retried one included, are sent
        listed = [api.get(f"/v1/jobs/{j}/webhooks").json()["data"] for j in (good, refused, again)]
        if all(d["status"] == "delivered" for ds in listed for d in ds):
            break
        time.sleep(0.5)
    assert all(d["status"] == "delivered" for ds in listed for d in ds), listed
    # Every attempt was counted by the webhooks worker (it counts just after recording).
    delivered, until = sum(len(ds) for ds in listed), time.monotonic() + 10
    while (counted := webhook_counts(api)).get("delivered", 0) < delivered:
        assert time.monotonic() < until, counted
        time.sleep(0.2)
    assert counted == {"delivered": delivered, "retried": 1}, counted
    api.get("/v1/jobs", limit=100)
    breakers = api.get("/v1/admin/breakers", key=ADMIN_KEY, limit=1000).json()
    api.get("/v1/admin/alerts", key=ADMIN_KEY, limit=1000)
    api.get("/v1/admin/teams", key=ADMIN_KEY)
    api.get("/v1/admin/budgets", key=ADMIN_KEY)
    for fmt in ("json", "csv"):
        api.get("/v1/reports/spend", group_by="team,feature,model,provider,day", format=fmt)
    metrics = api.get("/metrics", key=ADMIN_KEY).text + api.get("/metrics").text
    api.get("/healthz", key="")
    api.get("/openapi.json", key="")

    assert failed_calls, "some calls failed with the provider's message"
    assert any("401" in c["error"] or "API key" in c["error"] for c in failed_calls), failed_calls
    assert any(t["to"] == "open" for t in breakers["transitions"]), "the 401s opened a breaker"
    assert "inference_broker_requests_total" in metrics

    # The webhooks were signed with the planted secret (so it was used), never carry it.
    assert {path for path, *_ in receiver.posts} >= {"/good", "/refused", "/again"}
    for _, headers, body in receiver.posts:
        verify_webhook(body, headers, TEAM_SECRET)
        assert not leaks(json.dumps(headers)) and not leaks(body)

    found = [(what, leaks(body)) for what, body in api.bodies if leaks(body)]
    assert not found, f"secrets in API responses: {found}"
    files = [p for p in Path(stack.settings.data_dir).rglob("*") if p.is_file()]
    assert any(p.suffix == ".log" for p in files) and len(files) > 3, files
    found = [(str(p), leaks(p.read_bytes())) for p in files if leaks(p.read_bytes())]
    assert not found, f"secrets in the stack's files: {found}"
