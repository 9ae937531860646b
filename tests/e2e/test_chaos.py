"""Chaos with real processes: a provider outage, a 429 storm, killed workers, Redis restarted
empty and broken response bodies, each injected mid-batch into a fresh stack
(:mod:`broker.local.chaos_scenarios`). Whatever the fault: nothing lost, nothing charged twice,
workers up.
And the two ways a batch ends early on purpose: cancelled, or past its completion window.

Each runs once, on PostgreSQL when one is reachable (else SQLite): the database is not what
these test, and both kinds would double the longest tests of the suite."""

from __future__ import annotations

import time

import pytest

from broker.client import BrokerClient
from broker.local.chaos import TEAM_KEY, ChaosResult, ChaosStack
from broker.local.chaos_scenarios import (
    chain_outage,
    malformed_bodies,
    provider_outage,
    rate_limit_storm,
    redis_restart,
    worker_kills,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def show(capsys, result: ChaosResult) -> None:
    with capsys.disabled():
        print(f"\n  {result.fault}: {result.tally}\n  {result.notes}")


def assert_nothing_lost(result: ChaosResult) -> None:
    tally = result.tally
    assert tally.lost == 0, f"{tally.lost} requests never finished"
    assert tally.double_charged == 0, f"{tally.double_charged} requests charged twice"
    assert tally.ledger_rows == tally.ledger_attempts, "one ledger row per attempt"
    assert tally.ledger_rows == tally.succeeded, "every success charged, once"
    assert tally.succeeded + tally.failed == tally.requests


def test_an_outage_of_the_primary_costs_no_request(production_database_url, tmp_path, capsys):
    result = provider_outage(tmp_path, production_database_url, n=2000, outage_s=30)
    show(capsys, result)
    assert_nothing_lost(result)
    assert result.tally.succeeded == 2000, result.tally.errors
    assert result.tally.by_provider.get("sim-anthropic", 0) > 0, "the fallback took the traffic"
    assert result.notes["openai 503s served"] > 0, "the outage really happened"
    opened = result.notes["breaker opened after (s)"]
    assert opened is not None and opened <= 5.0, f"breaker opened after {opened} s"
    assert result.notes["breaker closed after recovery (s)"] is not None, "it closed again"


def test_a_whole_chain_down_holds_back_none_of_the_teams_other_work(
    production_database_url, tmp_path, capsys
):
    result = chain_outage(tmp_path, production_database_url, n=300, outage_s=20)
    show(capsys, result)
    assert_nothing_lost(result)
    notes = result.notes
    assert notes["healthy-model job succeeded"] == 300
    assert notes["healthy-model job lost"] == 0
    assert notes["healthy-model job done after (s)"] < notes["outage ended after (s)"], (
        "the team's work for a healthy model waited behind requests with nowhere to go"
    )
    assert notes["chain job done after (s)"] > notes["outage ended after (s)"]
    assert result.tally.succeeded >= 290, result.tally.errors  # a few probes may use up tries


def test_a_429_storm_fails_nothing_and_retries_wait_as_asked(
    production_database_url, tmp_path, capsys
):
    result = rate_limit_storm(tmp_path, production_database_url, n=300)
    show(capsys, result)
    assert_nothing_lost(result)
    assert result.tally.succeeded == 300, result.tally.errors
    assert result.notes["429s served"] > 0, "the simulator did rate-limit"
    assert result.notes["calls before their retry-after"] == 0


def test_killing_a_worker_three_times_loses_and_double_charges_nothing(
    production_database_url, tmp_path, capsys
):
    result = worker_kills(tmp_path, production_database_url, n=600, kills=3)
    show(capsys, result)
    assert_nothing_lost(result)
    assert result.tally.succeeded == 600, result.tally.errors
    assert result.notes["requests dispatched again"] > 0, "the kills hit requests in flight"
    several = result.notes["of them with several tickets"]
    assert several > 0, "a killed worker held a message of several tickets"


def test_redis_restarted_empty_mid_batch_loses_and_repeats_nothing(
    production_database_url, tmp_path, capsys
):
    result = redis_restart(tmp_path, production_database_url, n=600)
    show(capsys, result)
    assert_nothing_lost(result)
    assert result.tally.succeeded == 600, result.tally.errors
    assert result.notes["completions the provider served"] == 600, "nothing ran twice"


def test_malformed_bodies_fall_back_or_fail_with_the_reason(
    production_database_url, tmp_path, capsys
):
    result = malformed_bodies(tmp_path, production_database_url, n=300)
    show(capsys, result)
    assert_nothing_lost(result)
    assert result.notes["broken bodies served"] > 0
    assert set(result.tally.errors) <= {"malformed_response"}, result.tally.errors
    assert result.tally.succeeded >= 290, "nearly all recover by trying again or elsewhere"


def test_cancel_mid_batch_stops_the_queue_and_keeps_what_ran(production_database_url, tmp_path):
    with ChaosStack(tmp_path, production_database_url, {"latency_ms": 300}) as chaos:
        job = chaos.submit(300)
        time.sleep(2.0)
        with BrokerClient(chaos.stack.api_url, TEAM_KEY) as client:
            client.cancel(job)
            assert chaos.wait(job, timeout=30), "running requests finish, queued ones stop"
            final = client.get_job(job)
            results = list(client.results(job))
        tally = chaos.tally(job)
    assert final.status == "cancelled"
    assert 0 < final.counts.succeeded < 300 and final.counts.cancelled > 0
    assert final.counts.succeeded + final.counts.cancelled == 300
    assert tally.lost == 0 and tally.double_charged == 0
    done = [r for r in results if r.status == "succeeded"]
    assert len(done) == final.counts.succeeded and all(r.output and r.calls for r in done)


def test_a_closed_completion_window_expires_the_rest_and_the_job_reports_it(
    production_database_url, tmp_path
):
    with ChaosStack(tmp_path, production_database_url, {"latency_ms": 300}) as chaos:
        job = chaos.submit(400, completion_window="3s")
        assert chaos.wait(job, timeout=60)
        with BrokerClient(chaos.stack.api_url, TEAM_KEY) as client:
            final = client.get_job(job)
    assert final.status == "completed"
    assert 0 < final.counts.succeeded < 400 and final.counts.expired > 0
    assert final.counts.succeeded + final.counts.failed + final.counts.expired == 400
