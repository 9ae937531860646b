"""Routes on real processes: a tier chosen at submission, a cascade that escalates a turned-down
answer through the scheduler, both attempts charged and attributed, an LLM judge whose call is
billed with the attempt it judged, and fallback inside a tier. (Budgets with routes:
tests/e2e/test_budgets.py.)"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from sqlalchemy import func, select

from broker.client import BrokerClient
from broker.config.broker_toml import DEFAULT_CONFIG, hash_api_key
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack
from broker.store import Database, LedgerEntry, Request

pytestmark = pytest.mark.e2e


def test_a_cascade_escalates_and_charges_both_tiers(stack: Stack):
    requests = [
        {  # the small tier answers first (a hint), its answer is not JSON: up a tier
            "custom_id": "json",
            "model": "auto",
            "max_tokens": 1000,
            "metadata": {"tier": 0},
            "messages": [{"role": "user", "content": "Respond in JSON: two colours, as a list."}],
        },
        {  # nothing asked of the form: the small tier's answer stands
            "custom_id": "plain",
            "model": "auto",
            "max_tokens": 1000,
            "metadata": {"tier": 0},
            "messages": [{"role": "user", "content": "Say something about queues."}],
        },
    ]
    with BrokerClient(stack.api_url, "ib-dev-platform") as client:
        job = client.submit_batch(requests, feature="data-extraction")
        job.wait(timeout=120, poll_interval=0.3)
        results = {r.custom_id: r for r in job.results()}
    escalated, plain = results["json"], results["plain"]
    assert escalated.status == "succeeded" and escalated.model_used == "gpt-4o"
    assert escalated.route.escalated and escalated.route.checks[0].check == "json"
    assert escalated.route.checks[0].model == "gpt-4o-mini"
    assert plain.model_used == "gpt-4o-mini" and plain.route.checks[0].accept
    assert not plain.route.escalated

    db = Database(stack.settings.database_url_or_default)
    with db.session() as s:
        rows = s.execute(
            select(LedgerEntry.model, LedgerEntry.cost_micros).where(
                LedgerEntry.request_id == escalated.id
            )
        ).all()
        stored = s.scalar(select(func.sum(Request.cost_micros)).where(Request.job_id == job.id))
        ledger = s.scalar(
            select(func.sum(LedgerEntry.cost_micros)).where(LedgerEntry.job_id == job.id)
        )
    db.dispose()
    assert sorted(model for model, _ in rows) == ["gpt-4o", "gpt-4o-mini"]  # both charged
    assert escalated.cost_micros == sum(cost for _, cost in rows)
    assert job.cost_micros == stored == ledger


OWN = """
[[routes]]
name = "judged"
tiers = ["gpt-4o-mini", "gpt-4o"]
learned = "off"
cascade = { judge = "gpt-4.1-nano" }

[[routes]]
name = "plain"
tiers = ["gpt-4o-mini", "gpt-4o"]
learned = "off"
""" + "".join(
    f'\n[[teams]]\nid = "{team}"\nweight = 1\napi_key_sha256 = "{hash_api_key(f"ib-test-{team}")}"\n'
    for team in ("alpha", "beta")
)
SLOTS = 4
"""sim-openai's concurrency here: few slots, so that two backlogged teams contend for them."""


@pytest.fixture(scope="module")
def routed(module_database_url: str, tmp_path_factory) -> Iterator[Stack]:
    """A stack with a route ``judged`` (gpt-4.1-nano reads what its small tier writes), a
    route ``plain`` (no cascade), two teams of equal weight, and sim-openai at :data:`SLOTS`
    calls in flight."""
    tmp = tmp_path_factory.mktemp("routed")
    config = tmp / "broker.toml"
    text = DEFAULT_CONFIG.read_text()
    provider = 'name = "sim-openai"'
    head, tail = text.split(provider, 1)
    tail = tail.replace("concurrency = 64", f"concurrency = {SLOTS}", 1)
    config.write_text(head + provider + tail + OWN)
    settings = Settings(
        database_url=module_database_url,
        data_dir=tmp / "data",
        api_port=free_port(),
        config_path=config,
    )
    with Stack(settings) as running:
        yield running


def test_the_judge_reads_each_accepted_answer_and_its_call_is_billed(routed: Stack):
    tag = uuid.uuid4().hex[:8]
    requests = [
        {
            "custom_id": f"j{i}",
            "model": "judged",
            "max_tokens": 1000,  # the simulator's answers end before it: not truncated
            "messages": [{"role": "user", "content": f"[{tag}] Tell me about river {i}."}],
        }
        for i in range(8)
    ]
    with BrokerClient(routed.api_url, "ib-dev-platform") as client:
        job = client.submit_batch(requests, feature="data-extraction").wait(timeout=120)
        results = list(job.results())
    for result in results:
        assert result.status == "succeeded", result.error
        [check] = result.route.checks
        assert check.check == "judge" and check.model == "gpt-4o-mini"
        judged_calls = [c for c in result.calls if c.model == "gpt-4.1-nano"]
        assert len(judged_calls) == 1 and judged_calls[0].cost_micros > 0
        if check.accept:  # the small tier's answer stands; the judge was paid with it
            assert result.model_used == "gpt-4o-mini" and not result.route.escalated
            assert check.reason.startswith("the judge accepts")
        else:  # escalated through the scheduler: the flagship answered
            assert result.model_used == "gpt-4o" and result.route.escalated
            assert check.reason.startswith("the judge escalates")
        assert result.cost_micros == sum(c.cost_micros for c in result.calls)
    db = Database(routed.settings.database_url_or_default)
    with db.session() as s:
        ledger = s.scalar(
            select(func.sum(LedgerEntry.cost_micros)).where(LedgerEntry.job_id == job.id)
        )
    db.dispose()
    assert ledger == job.cost_micros == sum(r.cost_micros for r in results)


def service_of(db: Database, job_id: str) -> tuple[int, int]:
    """(requests finished, their service: input + 2 × output tokens, the scheduler's meter)."""
    with db.session() as s:
        count, tokens = s.execute(
            select(
                func.count(),
                func.coalesce(func.sum(Request.input_tokens + 2 * Request.output_tokens), 0),
            ).where(Request.job_id == job_id, Request.status == "succeeded")
        ).one()
    return int(count), int(tokens)


def test_two_teams_naming_routes_share_the_provider_fairly(routed: Stack):
    """alpha's requests run on a route's small tier, beta's on its flagship (tier hints): both
    on sim-openai's few slots. While both are backlogged, fair queueing (equal weights, service
    in tokens: input + 2 × output) keeps their service within its bound: 2U + K·U, U the
    largest charge of one request and K the requests in flight (fairness.py). ``max_tokens``
    is what the answers use (they stop at it), so a charge at dispatch is what the request
    costs: with ``max_tokens`` far above the answers, U is the estimate and the bound wide."""
    n, tag = 200, uuid.uuid4().hex[:8]

    def requests(tier: int) -> list[dict]:
        return [
            {
                "custom_id": f"t{tier}-{i}",
                "model": "plain",
                "max_tokens": 40,
                "metadata": {"tier": tier},
                "messages": [{"role": "user", "content": f"[{tag}] Name a colour, {i}."}],
            }
            for i in range(n)
        ]

    sim = f"{routed.env['BROKER_SIMULATOR_URL']}/_sim/config"
    db = Database(routed.settings.database_url_or_default)
    httpx.post(sim, json={"latency_ms": 40, "latency_sigma": 0}, timeout=5).raise_for_status()
    try:
        with (
            BrokerClient(routed.api_url, "ib-test-alpha") as alpha,
            BrokerClient(routed.api_url, "ib-test-beta") as beta,
        ):
            small = alpha.submit_batch(requests(0), feature="summarization", priority="low")
            flagship = beta.submit_batch(requests(1), feature="summarization", priority="low")

            def served() -> list[tuple[int, int]]:
                return [service_of(db, small.id), service_of(db, flagship.id)]

            start = served()  # alpha ran alone until beta's batch was in: count from here
            while start[1][0] == 0:
                time.sleep(0.02)
                start = served()
            now = start
            while sum(c for c, _ in now) - sum(c for c, _ in start) < n // 2:
                time.sleep(0.05)
                now = served()
            small_results = list(small.wait(timeout=120).results())
            big_results = list(flagship.wait(timeout=120).results())
            ran = {r.model_used for r in small_results}, {r.model_used for r in big_results}
    finally:
        httpx.post(sim, json={"latency_ms": 0, "latency_sigma": 0.5}, timeout=5).raise_for_status()
        db.dispose()
    assert ran == ({"gpt-4o-mini"}, {"gpt-4o"})
    (a_count, a_service), (b_count, b_service) = (
        (count - count0, service - service0)
        for (count, service), (count0, service0) in zip(now, start)
    )
    print(f"\nwhile both were backlogged: alpha {a_count} requests, {a_service:,} tokens of "
          f"service; beta {b_count}, {b_service:,} (alpha alone before: {start[0][0]})")  # fmt: skip
    largest = max(
        r.usage.input_tokens + 2 * r.usage.output_tokens for r in (*small_results, *big_results)
    )
    # The bound, and two requests more for the polling (a sample may fall mid-completion).
    assert abs(a_service - b_service) <= (2 + SLOTS + 2) * largest, (now, start, largest)


def test_a_tiers_model_failing_falls_back_down_that_tiers_chain(stack: Stack):
    """auto's small tier (gpt-4o-mini) fails at the provider: each request keeps its route
    decision and is answered by the next model of gpt-4o-mini's own chain, not by another
    tier. (Last in the module: gpt-4o-mini's breaker may stay open after it.)"""
    sim = f"{stack.env['BROKER_SIMULATOR_URL']}/_sim/config"
    outage = {"duration_s": 600, "model": "gpt-4o-mini"}
    tag = uuid.uuid4().hex[:8]
    requests = [
        {
            "custom_id": f"f{i}",
            "model": "auto",
            "max_tokens": 1000,
            "metadata": {"tier": 0},
            "messages": [{"role": "user", "content": f"[{tag}] Say something about queue {i}."}],
        }
        for i in range(4)
    ]
    httpx.post(sim, json={"outages": [outage]}, timeout=5).raise_for_status()
    try:
        with BrokerClient(stack.api_url, "ib-dev-platform") as client:
            job = client.submit_batch(requests, feature="data-extraction")
            job.wait(timeout=120, poll_interval=0.3)
            results = list(job.results())
    finally:
        httpx.post(sim, json={"outages": []}, timeout=5).raise_for_status()
    chain = ["claude-haiku-4-5", "gpt-4.1-nano"]  # gpt-4o-mini's fallbacks (broker.toml)
    for result in results:
        assert result.status == "succeeded", result.error
        assert result.model == "gpt-4o-mini" and result.route.model == "gpt-4o-mini"
        assert result.model_used in chain and not result.route.escalated
