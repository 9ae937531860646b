"""Weighted fair queueing on a real Redis: the production scheduler round, an in-process pool.

The pool finishes each running request with probability 1/2 per round and reports its actual
usage through the workers' own feedback path, so counters are charged by estimate and corrected
by actual usage exactly as in production.
"""

from __future__ import annotations

import pytest

from broker.config.broker_toml import load_config
from broker.states import Priority
from schedulers.fairness import FairQueue, OutputEstimates, Round, ServiceMeter, record_output
from schedulers.harness import Harness, jain_index

CONCURRENCY = 16


@pytest.fixture
def config():
    base = load_config()
    return base.with_providers(
        [
            p.model_copy(update={"concurrency": CONCURRENCY, "rpm": None, "tpm": None})
            for p in base.providers
        ]
    )


def largest_charge(harness: Harness, sizes, weight: float) -> float:
    return max(harness.meter.service("gpt-4o-mini", s[0], s[1]) for s in sizes) / weight


def test_two_equal_teams_stay_within_the_vtc_bound(redis_client, config):
    harness = Harness(redis_client, config, weights={"a": 1.0, "b": 1.0}, seed=7)
    sizes = {team: harness.random_sizes(2_000, max_input=800, max_output=400) for team in "ab"}
    for team, team_sizes in sizes.items():
        harness.submit(team, team_sizes)
    u = max(largest_charge(harness, s, 1.0) for s in sizes.values())
    bound = 2 * u + CONCURRENCY * u
    worst = 0.0
    for _ in range(300):  # about 2,400 dispatches: both teams stay backlogged throughout
        harness.step()
        service = harness.normalised()
        worst = max(worst, abs(service.get("a", 0.0) - service.get("b", 0.0)))
    assert len(harness.pool.sent) > 2_000
    print(f"\nmax difference {worst:.0f} weighted tokens; bound 2U + K·U = {bound:.0f}")
    assert worst <= bound


def test_weights_one_to_four_get_their_shares(redis_client, config):
    weights = {"w1": 1.0, "w2": 2.0, "w3": 3.0, "w4": 4.0}
    harness = Harness(redis_client, config, weights=weights, seed=3)
    for team in weights:
        harness.submit(team, harness.random_sizes(3_000))
    for _ in range(400):
        harness.step()
    total = sum(harness.service.values())
    shares = {team: harness.service[team] / total for team in weights}
    jain = jain_index(list(harness.normalised().values()))
    print(f"\nshares {shares}, Jain's index {jain:.5f}")
    for team, weight in weights.items():
        target = weight / sum(weights.values())
        assert abs(shares[team] - target) <= 0.05 * target, (team, shares[team], target)
    assert jain >= 0.99
    assert all(redis_client.llen(f"ib:q:{t}:medium") > 0 for t in weights), "all stayed backlogged"


def test_an_idle_team_cannot_bank_credit(redis_client, config):
    harness = Harness(redis_client, config, weights={"a": 1.0, "b": 1.0, "late": 1.0}, seed=5)
    for team in ("a", "b"):
        harness.submit(team, harness.random_sizes(6_000))
    for _ in range(300):
        harness.step()
    harness.submit("late", harness.random_sizes(3_000))
    before = dict(harness.service)
    for _ in range(150):
        harness.step()
    gained = {t: harness.service.get(t, 0.0) - before.get(t, 0.0) for t in ("a", "b", "late")}
    share = gained["late"] / sum(gained.values())
    print(f"\nthe late team's share after its burst: {share:.3f}")
    # Without the lift its counter would start at 0, far below the others', and it would have
    # had the whole pool to itself for the entire period.
    assert 0.25 <= share <= 0.42


def test_the_heap_serves_the_smallest_counter_and_lifts_newcomers(redis_client):
    fair = FairQueue(redis_client)
    weights = {"a": 1.0, "b": 2.0, "c": 1.0}
    round_ = fair.start_round(["a", "b"], weights)
    order = []
    for _ in range(6):
        team = round_.top()
        order.append(team)
        round_.charge(100.0)
    # b's weight 2 halves each of its charges: it is served twice as often.
    assert order.count("b") == 4 and order.count("a") == 2
    with redis_client.pipeline() as pipe:
        fair.finish_round(pipe, round_)
        pipe.execute()
    # c turns up: lifted to the smallest backlogged counter, not left at 0.
    round_ = fair.start_round(["a", "b", "c"], weights)
    assert round_.counters["c"] == min(round_.counters["a"], round_.counters["b"]) == 200.0


def test_worker_corrections_are_folded_into_the_counters(redis_client):
    fair = FairQueue(redis_client)
    weights = {"a": 2.0}
    round_ = fair.start_round(["a"], weights)
    round_.charge(1_000.0)
    with redis_client.pipeline() as pipe:
        fair.finish_round(pipe, round_)
        pipe.execute()
    redis_client.hincrbyfloat("ib:vtc:correction", "a", -400.0)  # used 600 of the 1,000 charged
    assert fair.start_round(["a"], weights).counters["a"] == pytest.approx(300.0)
    assert not redis_client.exists("ib:vtc:correction")


def test_cost_weighted_service(config):
    cost = config.model_copy(
        update={"scheduler": config.scheduler.model_copy(update={"service": "cost"})}
    )
    # gpt-4o: $2.50 in, $10.00 out per 1M tokens → micro-dollars.
    assert ServiceMeter(cost).service("gpt-4o", 1_000, 100) == pytest.approx(2_500 + 1_000)
    assert ServiceMeter(config).service("gpt-4o", 1_000, 100) == 1_200  # 1×in + 2×out


def test_priorities_inside_a_team_and_fairness_across(redis_client, config):
    harness = Harness(redis_client, config, weights={"a": 1.0, "b": 1.0}, seed=1)
    harness.submit("a", harness.random_sizes(500), priority=Priority.LOW)
    high = harness.submit("a", harness.random_sizes(5), priority=Priority.HIGH)
    harness.submit("b", harness.random_sizes(500))
    harness.step()
    first_of_a = [p.entry.request_id for p in harness.pool.sent if p.team == "a"][:5]
    assert first_of_a == high
    assert {p.team for p in harness.pool.sent} == {"a", "b"}


def test_round_refund_takes_back_a_charge():
    round_ = Round({"a": 0.0}, {"a": 2.0}, ["a"])
    round_.charge(10.0)
    round_.refund("a", 10.0)
    assert round_.counters["a"] == 0.0


# --- what a request is charged at dispatch: its answer's expected length ---------------------


def recorded(redis_client, answers: dict[tuple[str, str, str], list[int]]) -> None:
    with redis_client.pipeline() as pipe:
        for (team, feature, model), lengths in answers.items():
            for tokens in lengths:
                record_output(pipe, team, feature, model, tokens)
        pipe.execute()


def test_the_charge_is_the_mean_answer_once_there_are_enough(redis_client):
    now = [0.0]
    estimates = OutputEstimates(redis_client, refresh_s=1.0, clock=lambda: now[0])
    recorded(redis_client, {("a", "chatbot", "gpt-4o-mini"): [100, 121] * 10})
    recorded(redis_client, {("a", "search", "gpt-4o-mini"): [50] * 19})  # too few to tell
    recorded(redis_client, {("b", "chatbot", "gpt|odd"): [3000] * 20})  # a "|" in a model name
    estimates.refresh()
    assert estimates.output("a", "chatbot", "gpt-4o-mini", 1000) == 111  # 110.5, rounded up
    assert estimates.output("a", "chatbot", "gpt-4o-mini", 64) == 64  # never past max_tokens
    # too few of its own: the model's answers for everyone, (20 × 110.5 + 19 × 50) / 39 = 81.03
    assert estimates.output("a", "search", "gpt-4o-mini", 1000) == 82
    assert estimates.output("b", "chatbot", "gpt-4o-mini", 1000) == 82  # a newcomer too
    # a model with no answers yet: every answer's mean, (20 × 110.5 + 19 × 50 + 20 × 3000) / 59
    assert estimates.output("b", "chatbot", "gpt-4.1", 5000) == 1071
    assert estimates.output("b", "chatbot", "gpt|odd", 5000) == 3000
    recorded(redis_client, {("a", "search", "gpt-4o-mini"): [50]})
    estimates.refresh()  # within refresh_s: not read again
    assert estimates.output("a", "search", "gpt-4o-mini", 1000) == 82
    now[0] = 1.5
    estimates.refresh()
    assert estimates.output("a", "search", "gpt-4o-mini", 1000) == 50


def test_before_any_answers_max_tokens_is_charged(redis_client):
    estimates = OutputEstimates(redis_client, refresh_s=0)
    recorded(redis_client, {("a", "f", "m"): [10] * (OutputEstimates.MIN_ANSWERS - 1)})
    estimates.refresh()
    assert estimates.output("a", "f", "m", 700) == 700


def test_old_answers_count_for_less_as_new_ones_come(redis_client):
    estimates = OutputEstimates(redis_client, refresh_s=0)
    recorded(redis_client, {("a", "f", "m"): [100] * (OutputEstimates.DECAY_AT + 2)})
    estimates.refresh()  # counts halved (the mean kept)
    assert estimates.output("a", "f", "m", 1000) == 100
    recorded(redis_client, {("a", "f", "m"): [400] * 1001})
    estimates.refresh()
    assert estimates.output("a", "f", "m", 1000) == 250  # (1001×100 + 1001×400) / 2002


def test_a_team_joining_a_busy_provider_gets_its_share_at_once(redis_client, config):
    """max_tokens 2,000, answers of at most 200. a runs alone and fills every slot; then b
    arrives. Charged at max_tokens, each of a's requests in flight counts ten answers' worth
    when b is lifted to a's counter, so a is served ahead of b until they all come back;
    charged at the mean answer, b gets its share from the start. Service over the first
    rounds after b arrives stays within the bound computed from what answers use."""
    harness = Harness(redis_client, config, weights={"a": 1.0, "b": 1.0}, seed=11)

    def sizes() -> list:
        return [
            (est_in, 2_000, used_in, out)
            for est_in, _, used_in, out in harness.random_sizes(
                1_000, max_input=400, max_output=200
            )
        ]

    harness.submit("a", sizes())
    for _ in range(10):  # a alone: its first answers set the estimate, its requests fill up
        harness.step()
    before = dict(harness.normalised())
    harness.submit("b", sizes())
    used = harness.meter.service("gpt-4o-mini", 400, 200)
    bound = 2 * used + CONCURRENCY * used
    worst = 0.0
    for _ in range(40):
        harness.step()
        service = harness.normalised()
        gained = [service.get(t, 0.0) - before.get(t, 0.0) for t in "ab"]
        worst = max(worst, abs(gained[0] - gained[1]))
    print(f"\nmax difference {worst:.0f} weighted tokens; bound from answers {bound:.0f}")
    assert worst <= bound
