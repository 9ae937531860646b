"""``GET /metrics`` in-process: series recorded through the real scheduler and worker code paths
(``hold()``, ``Feedback.finished``, ``Breakers.record``, ``WebhookSender.deliver``) on a real
Redis, scraped and parsed with prometheus_client's own parser."""

from __future__ import annotations

import http.server
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import prometheus_client
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete

from broker import queues, redis_keys
from broker.api import create_app
from broker.config.broker_toml import DEFAULT_CONFIG, BrokerConfig, load_config
from broker.config.settings import Settings
from broker.ids import new_delivery_id
from broker.local.processes import free_port
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate
from broker.states import Priority
from broker.store import BudgetLimit
from broker.store.models import WebhookDelivery, utcnow
from broker.submission import Submitter
from schedulers.capacity import InFlight
from schedulers.dispatch import Pick, hold
from schedulers.feedback import Feedback
from schedulers.parking import Parking
from schedulers.ratelimits import RateLimits
from workers.breakers import Breakers
from workers.webhooks import WebhookSender

KEY_ENV = "IB_TEST_METRICS_PROVIDER_KEY"
PLANTED = "sk-planted-metrics-0123456789abcdef"

Series = dict[str, dict[tuple[tuple[str, str], ...], float]]


@pytest.fixture
def config_path(tmp_path: Path, monkeypatch, budgets_toml: str) -> Path:
    """The packaged broker.toml with two budgets, and sim-openai's key in the environment."""
    text = DEFAULT_CONFIG.read_text(encoding="utf-8")
    marker = 'name = "sim-openai"\n'
    assert text.count(marker) == 1
    text = text.replace(marker, f'{marker}api_key_env = "{KEY_ENV}"\n')
    path = tmp_path / "broker.toml"
    path.write_text(text + budgets_toml, encoding="utf-8")
    monkeypatch.setenv(KEY_ENV, PLANTED)
    return path


@pytest.fixture
def config(config_path: Path) -> BrokerConfig:
    loaded = load_config(config_path)
    assert loaded.provider("sim-openai").api_key_env == KEY_ENV
    return loaded


@pytest.fixture
def no_overrides(db):
    db.write(lambda s: s.execute(delete(BudgetLimit)))
    yield
    db.write(lambda s: s.execute(delete(BudgetLimit)))


@pytest.fixture
def api(settings: Settings, config_path: Path, redis_client, no_overrides) -> TestClient:
    with TestClient(create_app(settings.model_copy(update={"config_path": config_path}))) as c:
        yield c


METRICS_KEY = "ib-dev-metrics"  # the packaged broker.toml's development scrape key


def scrape(api: TestClient, key: str = METRICS_KEY) -> tuple[str, Series]:
    resp = api.get("/metrics", headers={"authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=")
    out: Series = {}
    for family in text_string_to_metric_families(resp.text):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            out.setdefault(sample.name, {})[labels] = sample.value
    return resp.text, out


def entry(i: int, model: str = "gpt-4o-mini") -> QueueEntry:
    return QueueEntry(f"req_{i:04d}", model, 100, 50, 0, "search")


def pick(i: int, provider: str, model: str) -> Pick:
    return Pick("product", Priority.MEDIUM, entry(i, model), provider, model, 100.0)


def test_queue_depth_covers_config_teams_and_backlogged_ones(api, redis_client):
    queues.push(redis_client, "product", [(Priority.HIGH, entry(1))] * 2)
    queues.push(redis_client, "product", [(Priority.LOW, entry(2))])
    queues.push(redis_client, "ghost", [(Priority.MEDIUM, entry(3))])  # gone from broker.toml
    _, series = scrape(api)
    depth = series["inference_broker_queue_depth"]
    assert depth[(("priority", "high"), ("team", "product"))] == 2
    assert depth[(("priority", "low"), ("team", "product"))] == 1
    assert depth[(("priority", "medium"), ("team", "product"))] == 0
    assert depth[(("priority", "medium"), ("team", "ghost"))] == 1
    assert {dict(k)["team"] for k in depth} == {"product", "content", "platform", "ghost"}
    assert len(depth) == 4 * 3


def test_parked_requests_show_per_team(api, redis_client):
    parked = [("content", Priority.LOW, entry(1)), ("orphan", Priority.HIGH, entry(2))]
    with redis_client.pipeline(transaction=False) as pipe:
        Parking(redis_client).park(pipe, parked)
        pipe.execute()
    _, series = scrape(api)
    by_team = {dict(k)["team"]: v for k, v in series["inference_broker_parked"].items()}
    assert by_team == {"content": 1, "orphan": 1, "platform": 0, "product": 0}
    depth = series["inference_broker_queue_depth"]
    assert depth[(("priority", "high"), ("team", "orphan"))] == 0, "parked is not queue depth"


def test_dispatches_finishes_tokens_cost_and_latency(api, config, redis_client):
    picks = [pick(i, "sim-openai", "gpt-4o-mini") for i in range(4)]
    picks += [pick(10 + i, "sim-anthropic", "claude-haiku-4-5") for i in range(2)]
    hold(redis_client, InFlight(redis_client, config, margin=0), RateLimits(redis_client, config),
         picks)  # fmt: skip
    _, series = scrape(api)
    assert series["inference_broker_in_flight"] == {
        (("provider", "sim-openai"),): 4,
        (("provider", "sim-anthropic"),): 2,
    }
    assert series["inference_broker_dispatches_total"] == {
        (("model", "gpt-4o-mini"), ("provider", "sim-openai")): 4,
        (("model", "claude-haiku-4-5"), ("provider", "sim-anthropic")): 2,
    }

    feedback = Feedback(redis_client, config)
    openai = [p.ticket(attempt=1) for p in picks[:4]]
    # Latencies: on a bound (50 ms is in le=0.05), between bounds, past the last one, none.
    for ticket, ms, ok in zip(openai, (50, 120, 45_000, 70_000), (True, True, True, False)):
        feedback.finished(
            ticket, input_tokens=100, output_tokens=20, cost_micros=1_500 if ok else 0,
            succeeded=ok, latency_ms=ms,
        )  # fmt: skip
    anthropic = [p.ticket(attempt=1) for p in picks[4:]]
    feedback.finished(anthropic[0], input_tokens=7, output_tokens=3, cost_micros=250)  # harness
    feedback.finished(  # another copy of the task recorded this attempt: nothing counts
        anthropic[1], input_tokens=7, output_tokens=3, cost_micros=250, recorded=False,
        latency_ms=10,
    )  # fmt: skip

    _, series = scrape(api)
    assert series["inference_broker_in_flight"] == {
        (("provider", "sim-openai"),): 0,
        (("provider", "sim-anthropic"),): 0,
    }
    oa = (("model", "gpt-4o-mini"), ("provider", "sim-openai"))
    an = (("model", "claude-haiku-4-5"), ("provider", "sim-anthropic"))
    assert series["inference_broker_requests_total"] == {
        (oa[0], ("outcome", "succeeded"), oa[1]): 3,
        (oa[0], ("outcome", "failed"), oa[1]): 1,
        (an[0], ("outcome", "succeeded"), an[1]): 1,
    }
    assert series["inference_broker_tokens_total"] == {
        (("kind", "input"), *oa): 400,
        (("kind", "output"), *oa): 80,
        (("kind", "input"), *an): 7,
        (("kind", "output"), *an): 3,
    }
    cost = series["inference_broker_cost_usd_total"]
    assert cost[oa] == pytest.approx(0.0045) and cost[an] == pytest.approx(0.00025)

    buckets = {
        dict(k)["le"]: v
        for k, v in series["inference_broker_request_latency_seconds_bucket"].items()
        if dict(k)["provider"] == "sim-openai"
    }
    assert buckets == {
        "0.05": 1, "0.1": 1, "0.25": 2, "0.5": 2, "1.0": 2, "2.5": 2, "5.0": 2, "10.0": 2,
        "30.0": 2, "60.0": 3, "+Inf": 4,
    }  # fmt: skip
    values = list(buckets.values())
    assert values == sorted(values), "cumulative"
    provider = (("provider", "sim-openai"),)
    assert series["inference_broker_request_latency_seconds_count"][provider] == 4
    assert series["inference_broker_request_latency_seconds_sum"][provider] == pytest.approx(
        (50 + 120 + 45_000 + 70_000) / 1000
    )
    assert (("provider", "sim-anthropic"),) not in series[
        "inference_broker_request_latency_seconds_count"
    ], "no latency given, none recorded"


def test_breaker_state_and_transitions(api, config, redis_client):
    breakers = Breakers(redis_client, config)
    breakers.record("sim-openai", "gpt-4o-mini", "unavailable")  # opens the provider at once
    _, series = scrape(api)
    state = {dict(k)["scope"]: v for k, v in series["inference_broker_breaker_state"].items()}
    assert state["provider:sim-openai"] == 2
    assert state["provider:sim-anthropic"] == 0 and state["model:gpt-4o-mini"] == 0
    assert set(state) == set(breakers.scopes)
    moves = series["inference_broker_breaker_transitions_total"]
    assert moves[(("scope", "provider:sim-openai"),)] == 1
    assert moves[(("scope", "model:gpt-4o-mini"),)] == 0


def test_budgets_remaining_and_limit_in_usd(api, config, redis_client):
    now = datetime.now(UTC)
    for budget in config.budgets:  # as if the ledger had been read
        redis_client.hset(redis_keys.budget(budget.id, budget.window_at(now).id), "loaded", 1)
    daily = next(b for b in config.budgets if b.id == "product/daily")
    redis_client.hset(
        redis_keys.budget(daily.id, daily.window_at(now).id),
        mapping={"spent": 250_000, "reserved": 1},
    )
    _, series = scrape(api)
    assert series["inference_broker_budget_limit_usd"] == {
        (("budget", "product/daily"),): 1.0,
        (("budget", "product/search/monthly"),): 5.0,
    }
    assert series["inference_broker_budget_remaining_usd"] == {
        (("budget", "product/daily"),): pytest.approx(0.749999),
        (("budget", "product/search/monthly"),): 5.0,
    }


def test_no_secret_reaches_the_output(api, config, redis_client):
    hold(redis_client, InFlight(redis_client, config, margin=0), RateLimits(redis_client, config),
         [pick(1, "sim-openai", "gpt-4o-mini")])  # fmt: skip
    Feedback(redis_client, config).finished(
        pick(1, "sim-openai", "gpt-4o-mini").ticket(1), input_tokens=1, latency_ms=5
    )
    Breakers(redis_client, config).record("sim-openai", "gpt-4o-mini", "failure")
    text, series = scrape(api)
    assert PLANTED not in text and "sk-" not in text and KEY_ENV not in text
    allowed = {"provider", "model", "team", "priority", "scope", "budget", "outcome", "kind", "le"}
    allowed |= {"route", "feature"}  # the routed series (tests/broker/api/test_collector.py)
    for samples in series.values():
        for labels in samples:
            assert {name for name, _ in labels} <= allowed


class Receiver:
    """Answers each POST with the next scripted status code (then 200)."""

    def __init__(self, codes: list[int]) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(codes.pop(0) if codes else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500])  # the first POST fails, every later one succeeds
    yield r
    r.close()


@pytest.fixture
def sender_for(settings, config_path, tmp_path, db, redis_client):
    """``sender_for(client)``: the webhooks worker's sender (127.0.0.1 allowlisted), counting
    in ``client``'s Redis; and ``deliveries(*urls)`` rows of a fresh job, due now."""
    path = tmp_path / "webhooks.toml"
    allow = '[webhooks]\nallow_private_hosts = ["127.0.0.1"]\ntimeout_s = 5\n'
    path.write_text(config_path.read_text(encoding="utf-8") + allow, encoding="utf-8")
    with_hooks = settings.model_copy(update={"config_path": path})
    senders: list[WebhookSender] = []

    def make(client) -> WebhookSender:
        senders.append(WebhookSender(with_hooks, db, client))
        return senders[-1]

    yield make
    for sender in senders:
        sender.close()


def delivery_rows(db, redis_client, config, *urls: str) -> list[str]:
    body = JobCreate(
        feature="search",
        requests=[{"custom_id": "r0", "model": "gpt-4o-mini",
                   "messages": [{"role": "user", "content": "hi"}]}],
    )  # fmt: skip
    job_id = Submitter(db, redis_client, config).submit(config.team("product"), body).id
    ids = [new_delivery_id() for _ in urls]
    now = utcnow()
    rows = [
        WebhookDelivery(id=i, job_id=job_id, team_id="product", event_type="job.finished",
                        url=url, payload={"job_id": job_id}, status="pending", attempts=0,
                        next_attempt_at=now, created_at=now)
        for i, url in zip(ids, urls)
    ]  # fmt: skip
    db.write(lambda s: s.add_all(rows))
    return ids


def test_webhook_attempts_count_by_outcome(api, config, db, redis_client, receiver, sender_for):
    sender = sender_for(redis_client)
    flaky, ok, refused = delivery_rows(
        db, redis_client, config, receiver.url, receiver.url, "http://10.1.2.3/hook"
    )
    assert sender.deliver(flaky, 1) == "pending"  # 500: another attempt is scheduled
    assert sender.deliver(flaky, 2) == "delivered"
    assert sender.deliver(flaky, 2) is None  # a duplicate task makes no attempt, counts nothing
    assert sender.deliver(ok, 1) == "delivered"
    assert sender.deliver(refused, 1) == "failed"  # a private address: given up at once
    _, series = scrape(api)
    assert series["inference_broker_webhook_deliveries_total"] == {
        (("outcome", "delivered"),): 2,
        (("outcome", "retried"),): 1,
        (("outcome", "failed"),): 1,
    }


def test_a_webhook_attempt_is_made_and_recorded_with_redis_down(
    api, config, db, redis_client, receiver, sender_for, caplog
):
    gone = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1)
    sender = sender_for(gone)
    [flaky] = delivery_rows(db, redis_client, config, receiver.url)
    with caplog.at_level(logging.WARNING, logger="workers.webhooks"):
        assert sender.deliver(flaky, 1) == "pending"
        assert sender.deliver(flaky, 2) == "delivered"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "not counted in /metrics" in warnings[0].getMessage()
    _, series = scrape(api)
    assert series.get("inference_broker_webhook_deliveries_total", {}) == {}
    gone.close()


def test_a_scrape_needs_a_key(api):
    for headers in ({}, {"authorization": "Bearer ib-not-a-key"}):
        resp = api.get("/metrics", headers=headers)
        assert resp.status_code == 401, resp.text
        assert resp.json()["error"]["type"] == "authentication_error"
        assert "metrics key" in resp.json()["error"]["message"]


def test_the_admin_key_sees_what_the_metrics_key_sees(api, redis_client):
    queues.push(redis_client, "content", [(Priority.HIGH, entry(1))])
    assert scrape(api, "ib-dev-admin")[1] == scrape(api)[1]


def test_a_team_key_sees_only_its_own_team(api, config, redis_client):
    queues.push(redis_client, "product", [(Priority.HIGH, entry(1))])
    queues.push(redis_client, "content", [(Priority.LOW, entry(2))])
    with redis_client.pipeline(transaction=False) as pipe:
        Parking(redis_client).park(pipe, [("content", Priority.LOW, entry(3))])
        pipe.execute()
    hold(redis_client, InFlight(redis_client, config, margin=0), RateLimits(redis_client, config),
         [pick(4, "sim-openai", "gpt-4o-mini")])  # fmt: skip
    Breakers(redis_client, config).record("sim-openai", "gpt-4o-mini", "unavailable")
    text, series = scrape(api, "ib-dev-content")
    teams = {
        dict(labels)["team"]
        for name, samples in series.items()
        for labels in samples
        if "team" in dict(labels)
    }
    assert teams == {"content"}
    assert series["inference_broker_queue_depth"][(("priority", "low"), ("team", "content"))] == 1
    assert series["inference_broker_parked"] == {(("team", "content"),): 1}
    assert "inference_broker_budget_limit_usd" not in series, "product's budgets are not theirs"
    assert series["inference_broker_breaker_state"][(("scope", "provider:sim-openai"),)] == 2
    for other_teams_traffic in ("dispatches", "requests", "tokens", "cost_usd", "in_flight"):
        assert f"inference_broker_{other_teams_traffic}" not in text
    assert "request_latency" not in text and "webhook" not in text
    own = scrape(api, "ib-dev-product")[1]
    assert set(own["inference_broker_budget_limit_usd"]) == {
        (("budget", "product/daily"),),
        (("budget", "product/search/monthly"),),
    }


def test_every_app_has_its_own_registry(api):
    scrape(api)
    assert b"inference_broker_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_redis_down_is_a_503_with_the_usual_error(settings: Settings, config_path: Path):
    gone = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "config_path": config_path}
    )
    with TestClient(create_app(gone)) as client:
        resp = client.get("/metrics", headers={"authorization": f"Bearer {METRICS_KEY}"})
    assert resp.status_code == 503, resp.text
    error = resp.json()["error"]
    assert error["type"] == "unavailable" and "Redis is unreachable" in error["message"]
