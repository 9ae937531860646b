"""Budgets end to end with real processes: never overshot under concurrent submitters, each
policy, a worker killed between reserve and settle, and the spend-velocity breaker."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis
from sqlalchemy import func, select

from broker import redis_keys
from broker.client import BrokerClient
from broker.config.broker_toml import DEFAULT_CONFIG, hash_api_key
from broker.config.budgets import BudgetConfig
from broker.config.settings import Settings
from broker.local.processes import free_port, wait_until
from broker.local.stack import Stack
from broker.money import format_usd
from broker.states import RequestStatus
from broker.store import Database, LedgerEntry, Request

pytestmark = pytest.mark.e2e

ADMIN = {"Authorization": "Bearer ib-dev-admin"}


def key(team: str) -> str:
    return f"ib-test-{team}"


def write_config(tmp_path: Path, teams: dict[str, str], extra: str, scheduler: str = "") -> Path:
    """The default broker.toml plus teams of these tests' own (their keys are ``key(team)``)
    with these lines, and more sections. Own teams: the session's database may hold other
    tests' spend for the default ones, and the ledger is what budgets count."""
    blocks = "".join(
        f'\n[[teams]]\nid = "{team}"\napi_key_sha256 = "{hash_api_key(key(team))}"\n{lines}\n'
        for team, lines in teams.items()
    )
    text = DEFAULT_CONFIG.read_text().replace("[scheduler]\n", f"[scheduler]\n{scheduler}\n", 1)
    path = tmp_path / "broker.toml"
    path.write_text(text + blocks + extra)
    return path


def start(
    tmp_path: Path, database_url: str, config: Path, submissions_per_minute: int = 60, **env: str
) -> Stack:
    settings = Settings(
        database_url=database_url,
        data_dir=tmp_path / "data",
        api_port=free_port(),
        config_path=config,
        submissions_per_minute=submissions_per_minute,
    )
    return Stack(settings, extra_env=env).start()


def batch(n: int, model: str = "gpt-4o", prefix: str = "r", max_tokens: int = 256) -> list[dict]:
    return [
        {
            "custom_id": f"{prefix}{i}",
            "model": model,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"Summarise report {prefix}{i}."}],
        }
        for i in range(n)
    ]


def budget_state(client: redis.Redis, budget_id: str, window: str = "daily") -> tuple[int, int]:
    """(spent, reserved) of a budget in its current window, micro-dollars."""
    now = datetime.now(UTC)
    window = BudgetConfig(team="x", window=window, limit_usd=1).window_at(now)
    spent, reserved = client.hmget(redis_keys.budget(budget_id, window.id), "spent", "reserved")
    return int(spent or 0), int(reserved or 0)


def ledger_total(db: Database, team: str) -> tuple[int, int]:
    with db.session() as s:
        total, rows = s.execute(
            select(func.coalesce(func.sum(LedgerEntry.cost_micros), 0), func.count()).where(
                LedgerEntry.team_id == team
            )
        ).one()
    return int(total), int(rows)


_SUBMITTER = """
import sys
from broker.client import BrokerClient
url, n, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
requests = [
    {"custom_id": f"{prefix}{i}", "model": "gpt-4o", "max_tokens": 256,
     "messages": [{"role": "user", "content": f"Summarise report {prefix}{i}."}]}
    for i in range(n)
]
with BrokerClient(url, "ib-test-capped") as client:
    print(client.submit_batch(requests, feature="summarization").id)
"""


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sixty_four_submitters_never_overshoot_a_one_dollar_budget(tmp_path, fresh_database_url):
    config = write_config(
        tmp_path,
        {"capped": 'budget_policy = "reject"'},
        '[[budgets]]\nteam = "capped"\nwindow = "daily"\nlimit_usd = "1.00"\n',
    )
    # 64 batches from one key within seconds: more than the key's default 60 a minute allows
    # (that limit has its own test); this one is about the budget.
    stack = start(
        tmp_path, fresh_database_url, config, submissions_per_minute=0, BROKER_SIM_LATENCY_MS="20"
    )
    r = redis.Redis.from_url(stack.env["BROKER_REDIS_URL"])
    db = Database(stack.settings.database_url_or_default)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            spent, reserved = budget_state(r, "capped/daily")
            samples.append(spent + reserved)
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        n_threads, n_procs = 32, 32
        sizes = [10_000 // 64 + (1 if i < 10_000 % 64 else 0) for i in range(64)]
        job_ids: list[str] = []
        lock = threading.Lock()

        def submit_from_thread(i: int) -> None:
            with BrokerClient(stack.api_url, key("capped")) as client:
                job = client.submit_batch(batch(sizes[i], prefix=f"t{i}-"), feature="summarization")
            with lock:
                job_ids.append(job.id)

        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _SUBMITTER, stack.api_url, str(sizes[32 + i]), f"p{i}-"],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ},
            )
            for i in range(n_procs)
        ]
        threads = [threading.Thread(target=submit_from_thread, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for p in procs:
            out, _ = p.communicate(timeout=120)
            assert p.returncode == 0
            job_ids.append(out.strip())
        assert len(job_ids) == 64

        def all_done() -> bool:
            with db.session() as s:
                pending = s.scalar(
                    select(func.count())
                    .select_from(Request)
                    .where(Request.status.not_in([RequestStatus.SUCCEEDED, RequestStatus.FAILED]))
                )
            return pending == 0

        wait_until(all_done, 240, "every request to end")
        wait_until(lambda: budget_state(r, "capped/daily")[1] == 0, 30, "reservations settled")
        done.set()
        sampler.join()
        spent, _ = budget_state(r, "capped/daily")
        ledger, rows = ledger_total(db, "capped")
        with db.session() as s:
            errors = Counter(
                s.scalars(select(Request.error_code).where(Request.team_id == "capped")).all()
            )
        assert not stack.dead_children()
    finally:
        done.set()
        db.dispose()
        r.close()
        stack.stop()
    limit = 1_000_000
    peak = max(samples)
    print(
        f"\n64 submitters, 10,000 requests: settled {format_usd(ledger)} of {format_usd(limit)} "
        f"({ledger / limit:.1%}) in {rows} charged requests; overshoot "
        f"{format_usd(max(0, ledger - limit))}; peak spent+reserved {format_usd(peak)} over "
        f"{len(samples)} samples; outcomes {dict(errors)}"
    )
    assert ledger <= limit and peak <= limit
    assert spent == ledger, "the Redis counter equals the ledger"
    assert errors[None] == rows and errors["budget_exceeded"] == 10_000 - rows
    assert ledger >= 0.9 * limit, "the budget is used, not refused early"


@pytest.fixture(scope="module")
def policies(tmp_path_factory, module_database_url):
    """One stack, one policy per team: rejecter, holder, downgrader, and research with the
    spend-velocity breaker."""
    tmp_path = tmp_path_factory.mktemp("policies")
    config = write_config(
        tmp_path,
        {
            "rejecter": 'budget_policy = "reject"',
            "holder": 'budget_policy = "hold"',
            "downgrader": 'budget_policy = "downgrade"',
            "research": "velocity_share = 0.05\nvelocity_window_s = 60",
            "routed": 'budget_policy = "reject"',
            "routeholder": 'budget_policy = "hold"',
        },
        """
[[budgets]]
team = "rejecter"
limit_usd = "0.01"

[[budgets]]
team = "routed"
limit_usd = "0.01"

[[budgets]]
team = "holder"
limit_usd = "0.005"

[[budgets]]
team = "routeholder"
limit_usd = "0.005"

[[budgets]]
team = "downgrader"
feature = "search"
window = "monthly"
limit_usd = "0.00013"

[[budgets]]
team = "downgrader"
feature = "translation"
window = "monthly"
limit_usd = "0.00013"

[[budgets]]
team = "research"
limit_usd = "0.10"
""",
    )
    stack = start(tmp_path, module_database_url, config, BROKER_SIM_LATENCY_MS="300")
    yield stack
    dead = stack.dead_children()
    stack.stop()
    assert not dead


def test_reject_fails_what_does_not_fit_and_says_which_budget(policies):
    with BrokerClient(policies.api_url, key("rejecter")) as client:
        job = client.submit_batch(batch(20), feature="summarization").wait(timeout=60)
        results = list(job.results())
    ok = [r for r in results if r.status == "succeeded"]
    refused = [r for r in results if r.status == "failed"]
    assert ok and refused and len(ok) + len(refused) == 20
    assert sum(r.cost_micros for r in ok) <= 10_000
    for r in refused:
        assert r.error.code == "budget_exceeded"
        assert "rejecter/daily" in r.error.message and "limit $0.0100" in r.error.message


def test_a_route_reserves_its_chosen_tiers_worst_case(policies):
    """Route auto's flagship tier (gpt-4o) does not all fit $0.01 and is refused past it, as
    a request naming gpt-4o would be; the same prompts on its small tier all fit."""
    small = [{**r, "model": "auto", "metadata": {"tier": 0}} for r in batch(20, prefix="s")]
    flagship = [{**r, "model": "auto", "metadata": {"tier": 1}} for r in batch(20, prefix="f")]
    with BrokerClient(policies.api_url, key("routed")) as client:
        cheap = client.submit_batch(small, feature="summarization").wait(timeout=60)
        dear = client.submit_batch(flagship, feature="summarization").wait(timeout=60)
        cheap_results, dear_results = list(cheap.results()), list(dear.results())
    assert all(r.status == "succeeded" and r.model_used == "gpt-4o-mini" for r in cheap_results)
    ok = [r for r in dear_results if r.status == "succeeded"]
    refused = [r for r in dear_results if r.status == "failed"]
    assert ok and refused and all(r.route.model == "gpt-4o" for r in dear_results)
    assert all(r.error.code == "budget_exceeded" for r in refused)
    assert sum(r.cost_micros for r in cheap_results + ok) <= 10_000


def test_downgrade_runs_on_the_next_cheaper_model_that_fits(policies):
    with BrokerClient(policies.api_url, key("downgrader")) as client:
        job = client.submit_batch(batch(1, model="gpt-4o-mini"), feature="search")
        (result,) = list(job.wait(timeout=60).results())
    # gpt-4o-mini's worst case ($0.000162) does not fit $0.00013; gpt-4.1-nano's ($0.000108) does.
    assert result.status == "succeeded" and result.model == "gpt-4o-mini"
    assert result.model_used == "gpt-4.1-nano"


def test_downgrade_takes_a_routed_request_down_its_routes_tiers(policies):
    """auto's flagship tier (gpt-4o) has nothing cheaper in its own chain: the request runs on
    the route's cheaper tier, on the first model of that tier's chain whose worst case fits."""
    (one,) = batch(1, prefix="t")
    routed = [{**one, "model": "auto", "metadata": {"tier": 1}}]
    with BrokerClient(policies.api_url, key("downgrader")) as client:
        job = client.submit_batch(routed, feature="translation")
        (result,) = list(job.wait(timeout=60).results())
    assert result.status == "succeeded", result.error
    assert result.model == "gpt-4o" and result.route.model == "gpt-4o"
    # gpt-4o-mini ($0.000162) and claude-haiku-4-5 do not fit $0.00013; gpt-4.1-nano does.
    assert result.model_used == "gpt-4.1-nano"


def held_then_raised(stack: Stack, team: str, requests: list[dict]) -> list:
    """Submit ``requests`` for a hold team; check some wait for budget (none fail) while the
    limit stands; raise it; the results once all have run."""
    with BrokerClient(stack.api_url, key(team)) as client:
        job = client.submit_batch(requests, feature="code-generation")
        wait_until(lambda: client.get_job(job.id).counts.succeeded >= 1, 30, "the first to run")
        time.sleep(3)
        held = client.get_job(job.id)
        assert held.status == "running" and held.counts.failed == 0
        assert held.counts.succeeded < len(requests)
        db = Database(stack.settings.database_url_or_default)
        with db.session() as s:
            waiting = s.scalar(
                select(func.count())
                .select_from(Request)
                .where(Request.job_id == job.id, Request.status == RequestStatus.WAITING_BUDGET)
            )
        db.dispose()
        assert waiting >= 1
        response = httpx.put(
            f"{stack.api_url}/v1/admin/budgets/{team}/daily/limit",
            json={"limit_usd": "1.00"},
            headers=ADMIN,
        )
        assert response.status_code == 200, response.text
        done = job.wait(timeout=60)
        assert done.status == "completed" and done.counts.succeeded == len(requests)
        return list(done.results())


def test_hold_waits_and_resumes_when_the_limit_is_raised(policies):
    held_then_raised(policies, "holder", batch(10))


def test_hold_keeps_a_routed_request_on_its_tier_until_the_limit_is_raised(policies):
    """Held, a routed request waits for its chosen tier's worst case to fit: it is neither
    refused nor moved to a cheaper tier, and runs on the flagship once the limit is raised."""
    routed = [{**r, "model": "auto", "metadata": {"tier": 1}} for r in batch(10, prefix="h")]
    results = held_then_raised(policies, "routeholder", routed)
    assert all(r.route.model == "gpt-4o" and r.model_used == "gpt-4o" for r in results)


def test_the_velocity_breaker_pauses_only_the_runaway_team(policies):
    with (
        BrokerClient(policies.api_url, key("research")) as research,
        BrokerClient(policies.api_url, "ib-dev-content") as content,
    ):
        runaway = research.submit_batch(batch(200), feature="data-extraction")

        def paused() -> dict:
            teams = httpx.get(f"{policies.api_url}/v1/admin/teams", headers=ADMIN).json()
            return next(t for t in teams["teams"] if t["team"] == "research")

        wait_until(lambda: paused()["paused"], 30, "the breaker to trip")
        assert "velocity" in paused()["paused_reason"]
        time.sleep(3)
        stalled = research.get_job(runaway.id).counts
        time.sleep(2)
        assert research.get_job(runaway.id).counts.succeeded == stalled.succeeded, "paused"
        other = content.submit_batch(batch(2, model="gpt-4.1-nano"), feature="translation")
        assert other.wait(timeout=30).status == "completed", "other teams keep going"
        alerts = httpx.get(
            f"{policies.api_url}/v1/admin/alerts", params={"team": "research"}, headers=ADMIN
        ).json()["alerts"]
        assert any(a["type"] == "velocity_breaker" for a in alerts)
        httpx.post(
            f"{policies.api_url}/v1/admin/teams/research/resume", headers=ADMIN
        ).raise_for_status()
        wait_until(
            lambda: research.get_job(runaway.id).counts.succeeded > stalled.succeeded,
            30,
            "the team to run again after resume",
        )


def request_rows(db: Database, team: str) -> list[Request]:
    with db.session() as s:
        return list(s.scalars(select(Request).where(Request.team_id == team)))


def assert_counters_equal_the_ledger(r: redis.Redis, db: Database, team: str) -> int:
    """Once nothing is reserved, the Redis counter equals the ledger (within a reconciliation
    period, after Redis lost its data) and every request was charged once."""
    wait_until(lambda: budget_state(r, f"{team}/daily")[1] == 0, 30, "reservations released")
    wait_until(
        lambda: budget_state(r, f"{team}/daily")[0] == ledger_total(db, team)[0],
        30,
        "the counter to equal the ledger",
    )
    with db.session() as s:
        charges = s.execute(
            select(LedgerEntry.request_id, func.count())
            .where(LedgerEntry.team_id == team)
            .group_by(LedgerEntry.request_id)
        ).all()
    assert all(n == 1 for _, n in charges), "one charge per request"
    return ledger_total(db, team)[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_killed_between_reserve_and_settle(tmp_path, fresh_database_url):
    config = write_config(
        tmp_path,
        {"crashy": 'budget_policy = "hold"'},
        '[[budgets]]\nteam = "crashy"\nlimit_usd = "1.00"\n',
        scheduler="reap_after_s = 8",
    )
    stack = start(
        tmp_path,
        fresh_database_url,
        config,
        BROKER_SIM_LATENCY_MS="3000",
        BROKER_SIM_LATENCY_SIGMA="0",
    )
    r = redis.Redis.from_url(stack.env["BROKER_REDIS_URL"])
    db = Database(stack.settings.database_url_or_default)
    try:
        with BrokerClient(stack.api_url, key("crashy")) as client:
            job = client.submit_batch(batch(12, model="gpt-4o-mini"), feature="search")

            def running() -> int:
                return sum(
                    row.status == RequestStatus.RUNNING for row in request_rows(db, "crashy")
                )

            wait_until(lambda: running() >= 6, 30, "attempts in flight")
            assert r.hlen(redis_keys.reservations()) >= 6, "reserved, not yet settled"
            stack.children["worker-sim-openai"].signal(signal.SIGKILL)
            stack.add_worker("sim-openai")
            done = job.wait(timeout=90, poll_interval=0.5)
        ledger = assert_counters_equal_the_ledger(r, db, "crashy")
        retried = [row for row in request_rows(db, "crashy") if row.attempts > 1]
        alerts = [
            a
            for a in (json.loads(x) for x in r.lrange(redis_keys.alerts(), 0, -1))
            if a["type"] == "attempt_lost"
        ]
    finally:
        db.dispose()
        r.close()
        stack.stop()
    print(
        f"\nkilled a worker mid-call: {len(retried)} requests retried, ledger "
        f"{format_usd(ledger)} = Redis spent, {len(alerts)} attempt_lost alerts"
    )
    assert done.status == "completed" and done.counts.succeeded == 12
    assert retried and len(alerts) >= len(retried)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_redis_flushed_mid_run_is_rebuilt_from_the_database(tmp_path, fresh_database_url):
    config = write_config(
        tmp_path,
        {"flushed": 'budget_policy = "reject"'},
        '[[budgets]]\nteam = "flushed"\nlimit_usd = "0.20"\n',
        scheduler="reap_after_s = 8",
    )
    stack = start(tmp_path, fresh_database_url, config, BROKER_SIM_LATENCY_MS="200")
    r = redis.Redis.from_url(stack.env["BROKER_REDIS_URL"])
    db = Database(stack.settings.database_url_or_default)
    try:
        with BrokerClient(stack.api_url, key("flushed")) as client:
            job = client.submit_batch(batch(300), feature="summarization")
            wait_until(lambda: client.get_job(job.id).counts.succeeded >= 40, 60, "progress")
            r.flushall()  # our private server: everything Redis held is gone
            done = job.wait(timeout=120, poll_interval=0.5)
        ledger = assert_counters_equal_the_ledger(r, db, "flushed")
        rows = request_rows(db, "flushed")
        assert not stack.dead_children()
    finally:
        db.dispose()
        r.close()
        stack.stop()
    outcomes = Counter(row.error_code for row in rows)
    print(f"\nRedis flushed mid-run: settled {format_usd(ledger)} of $0.2000; {dict(outcomes)}")
    assert done.status == "completed" and done.counts.total == 300
    assert ledger <= 200_000, "no overshoot after the rebuild"
    assert set(outcomes) <= {None, "budget_exceeded"}
