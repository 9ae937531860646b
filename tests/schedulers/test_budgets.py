"""Budget reservations on a real Redis and database: scopes, all-or-nothing reserve, settlement
once per attempt, release, loading from the ledger, reconciliation, trace ceilings."""

from __future__ import annotations

import pytest
from sqlalchemy import delete

from broker.config.broker_toml import load_config, parse_config
from broker.queues import QueueEntry
from broker.store import LedgerEntry
from schedulers.budgets import BudgetLimits, BudgetRound, Budgets, cost_bound


@pytest.fixture
def config():
    data = load_config().model_dump(mode="json")
    data["budgets"] = [
        {"team": "product", "limit_usd": "0.01"},
        {"team": "product", "feature": "search", "window": "monthly", "limit_usd": "0.005"},
    ]
    for team in data["teams"]:
        if team["id"] == "product":
            team["trace_limit_usd"] = "0.003"
    return parse_config(data)


@pytest.fixture
def budgets(redis_client, db, config):
    db.write(lambda s: s.execute(delete(LedgerEntry)))
    yield Budgets(redis_client, db, config, BudgetLimits(db, config, refresh_s=0))
    db.write(lambda s: s.execute(delete(LedgerEntry)))


def settle(redis_client, budgets, rid, attempt, actual, scopes):
    with redis_client.pipeline() as pipe:
        budgets.settle(pipe, rid, attempt, actual, scopes)
        pipe.execute()


def test_a_request_counts_against_team_feature_and_trace(budgets):
    labels = [s.label for s in budgets.scopes("product", "search", "run-7")]
    assert labels == ["product/daily", "product/search/monthly", "trace run-7 of product"]
    assert [s.label for s in budgets.scopes("product", "chatbot", None)] == ["product/daily"]
    assert budgets.scopes("content", "search", "run-7") == []


def test_the_worst_case_bound_rounds_up(config):
    entry = QueueEntry("r", "gpt-4o", 100, 50, 0)
    # 100 × $2.50 + 50 × $10.00 per 1M tokens = 750 micro-dollars exactly.
    assert cost_bound(config, "gpt-4o", entry) == 750
    assert cost_bound(config, "gpt-4o-mini", QueueEntry("r", "gpt-4o-mini", 1, 1, 0)) == 1


def test_a_judged_tier_reserves_the_judges_call_too(config):
    data = config.model_dump(mode="json")
    data["routes"][0]["cascade"] = {"judge": "gpt-4.1-nano", "judge_max_tokens": 200}
    judged = parse_config(data)
    entry = QueueEntry("r", "gpt-4o-mini", 100, 50, 0, route="auto")
    # the answer: 100 × $0.15 + 50 × $0.60 = 45; the judge (gpt-4.1-nano) reads the request,
    # twice the answer's 50 tokens and 1,024 bytes of framing at $0.10, and writes 200 at $0.40:
    # 122.4 + 80, rounded up to 203.
    assert cost_bound(judged, "gpt-4o-mini", entry) == 45 + 203
    last_tier = QueueEntry("r", "gpt-4o", 100, 50, 0, route="auto")
    assert cost_bound(judged, "gpt-4o", last_tier) == 750  # no judge after the last tier
    assert cost_bound(judged, "gpt-4o-mini", QueueEntry("r", "gpt-4o-mini", 100, 50, 0)) == 45


def test_reserve_is_all_or_nothing_and_settles_once_per_attempt(redis_client, budgets):
    scopes = budgets.scopes("product", "search", "run-7")
    # The trace ceiling ($0.003) is the tightest: 2,000 fits, another 2,000 does not.
    assert budgets.reserve([("a", 2_000, scopes), ("b", 2_000, scopes)]) == [True, False]
    state = budgets.snapshot(scopes)
    assert all(reserved == 2_000 for _, reserved in state.values()), "b took nothing anywhere"
    settle(redis_client, budgets, "a", 1, 1_500, scopes)
    settle(redis_client, budgets, "a", 1, 1_500, scopes)  # a redelivered task: no second charge
    assert all(v == [1_500, 0] for v in budgets.snapshot(scopes).values())
    assert budgets.reserve([("b", 1_000, scopes)]) == [True]
    with redis_client.pipeline() as pipe:
        budgets.release(pipe, "b")
        pipe.execute()
    assert all(v == [1_500, 0] for v in budgets.snapshot(scopes).values())


def test_a_round_holds_what_it_picked_and_explains_a_refusal(budgets):
    round_ = BudgetRound(budgets)
    entry = QueueEntry("r", "gpt-4o", 100, 50, 0, "chatbot")
    scopes = round_.scopes("product", entry)
    for _ in range(13):
        assert round_.over(scopes, 750) is None
        round_.hold(scopes, 750)
    over = round_.over(scopes, 750)
    assert over is not None and over.label == "product/daily"
    assert round_.explain(over, 750) == (
        "budget product/daily exceeded: limit $0.0100, spent $0.0000, reserved $0.0098; "
        "this request needs up to $0.0008"
    )


def test_spend_redis_lacks_is_loaded_from_the_ledger_and_reconciled(
    redis_client, db, budgets, submit_ledger
):
    submit_ledger(3_000)
    scopes = budgets.scopes("product", "chatbot", None)
    assert budgets.snapshot(scopes)[scopes[0].key] == [3_000, 0], "loaded once from the ledger"
    redis_client.hincrby(scopes[0].key, "spent", 500)  # counted twice after a Redis loss
    assert budgets.reconcile() == 1
    assert budgets.snapshot(scopes)[scopes[0].key] == [3_000, 0]
    budgets.reserve([("x", 100, scopes)])
    redis_client.hincrby(scopes[0].key, "spent", 500)
    assert budgets.reconcile() == 0, "never while something is reserved"


@pytest.fixture
def submit_ledger(db, redis_client, config):
    """Write one charged attempt of ``cost`` micro-dollars for product to the ledger."""
    from sqlalchemy import select

    from broker.schemas.http import JobCreate
    from broker.store import Request, transitions
    from broker.store.transitions import Outcome
    from broker.submission import Submitter

    def _charge(cost: int) -> None:
        body = JobCreate(
            feature="chatbot",
            requests=[
                {
                    "custom_id": "c",
                    "model": "gpt-4o",
                    "messages": [{"role": "user", "content": "hi"}],
                }
            ],
        )
        job = Submitter(db, redis_client, config).submit(config.team("product"), body)
        with db.session() as s:
            rid = s.scalar(select(Request.id).where(Request.job_id == job.id))
        db.write(lambda s: transitions.mark_dispatched(s, [rid]))
        claimed = db.write(lambda s: transitions.claim_many(s, [(rid, 1)]))[(rid, 1)]
        outcome = Outcome(
            model="gpt-4o",
            provider="sim-openai",
            latency_ms=1,
            output="x",
            input_tokens=1,
            output_tokens=1,
            cost_micros=cost,
        )
        db.write(lambda s: transitions.finish_many(s, [(claimed, outcome)]))

    return _charge
