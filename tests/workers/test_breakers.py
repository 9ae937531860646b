"""Circuit breakers shared through a real Redis: opening, half-open probes, lost probes,
"unavailable", the sliding window, pipelines, the transitions log and failing open."""

from __future__ import annotations

import logging
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig, load_config
from broker.config.resilience import BreakerConfig
from broker.local.processes import free_port
from workers.breakers import Breakers, BreakerState

P, M, OTHER_M = "sim-openai", "gpt-4o", "gpt-4o-mini"
PROVIDER, MODEL = f"provider:{P}", f"model:{M}"
OPEN_S = 0.4


def make_config(timeout_s: float = 30.0, **breakers: object) -> BrokerConfig:
    base = load_config()
    providers = [p.model_copy(update={"timeout_s": timeout_s}) for p in base.providers]
    settings = {
        "window_s": 2,
        "min_calls": 4,
        "failure_rate": 0.5,
        "consecutive_failures": 100,
        "open_s": OPEN_S,
        "probes": 2,
        "unavailable_s": 60.0,
        **breakers,
    }
    return base.with_providers(providers).model_copy(update={"breakers": BreakerConfig(**settings)})


def record(b: Breakers, outcomes: str, provider: str = P, model: str = M) -> None:
    """``outcomes``: one letter per call, S success, F failure, U unavailable."""
    names = {"S": "success", "F": "failure", "U": "unavailable"}
    for letter in outcomes:
        b.record(provider, model, names[letter])  # type: ignore[arg-type]


def state(b: Breakers, scope: str) -> BreakerState:
    return {s.scope: s for s in b.states()}[scope]


def half_open(b: Breakers) -> None:
    """Open both scopes of (P, M) on the failure rate, then wait out open_s."""
    record(b, "FFFF")
    assert b.allowances()[PROVIDER] == 0
    time.sleep(OPEN_S * 2)
    allowances = b.allowances()
    assert allowances[PROVIDER] == 2 and allowances[MODEL] == 2


def test_allowances_cover_every_scope_and_start_closed(redis_client):
    config = make_config()
    b = Breakers(redis_client, config)
    allowances = b.allowances()
    assert set(allowances) == {f"provider:{p.name}" for p in config.providers} | {
        f"model:{m.name}" for m in config.models
    }
    assert all(v is None for v in allowances.values())
    assert b.admit(P, M) is None
    assert redis_client.keys("*") == [], "a closed scope without calls writes nothing"


def test_stays_closed_under_min_calls(redis_client):
    b = Breakers(redis_client, make_config())
    record(b, "FFF")
    s = state(b, PROVIDER)
    assert (s.state, s.calls, s.failures, s.failure_rate) == ("closed", 3, 3, 1.0)
    assert b.admit(P, M) is None
    record(b, "F")
    assert state(b, PROVIDER).state == "open"


def test_opens_on_failure_rate(redis_client):
    b = Breakers(redis_client, make_config(failure_rate=0.5))
    record(b, "SFS")
    assert b.allowances()[PROVIDER] is None
    record(b, "F")  # 2 of 4
    allowances = b.allowances()
    assert allowances[PROVIDER] == 0 and allowances[MODEL] == 0
    s = state(b, PROVIDER)
    assert s.state == "open" and s.calls == 4 and s.failure_rate == 0.5
    assert s.opened_at is not None and s.retry_at == pytest.approx(s.opened_at + OPEN_S)
    assert abs(s.opened_at - time.time()) < 5
    assert b.transitions()[0]["reason"] == "failure rate 0.50 over 2 s (4 calls)"


def test_opens_on_consecutive_failures(redis_client):
    b = Breakers(redis_client, make_config(min_calls=100, consecutive_failures=3))
    record(b, "FF")
    assert state(b, PROVIDER).consecutive_failures == 2
    record(b, "F")
    assert state(b, PROVIDER).state == "open"
    assert b.transitions(1)[0]["reason"] == "3 failures in a row"


def test_a_success_resets_the_run(redis_client):
    b = Breakers(redis_client, make_config(min_calls=100, consecutive_failures=3))
    record(b, "FFSFF")
    s = state(b, PROVIDER)
    assert s.state == "closed" and s.consecutive_failures == 2
    record(b, "F")
    assert state(b, PROVIDER).state == "open"


def test_an_open_model_scope_refuses_only_that_model(redis_client):
    b = Breakers(redis_client, make_config(failure_rate=0.6))
    record(b, "SSSS", model=OTHER_M)
    record(b, "FFFF")  # gpt-4o: 4 of 4; the provider: 4 of 8
    assert b.admit(P, M) == MODEL
    assert b.admit(P, OTHER_M) is None
    assert state(b, PROVIDER).state == "closed"


def test_an_open_provider_scope_refuses_all_its_models(redis_client):
    b = Breakers(redis_client, make_config())
    record(b, "U")
    assert b.admit(P, M) == PROVIDER
    assert b.admit(P, OTHER_M) == PROVIDER
    assert b.admit("sim-anthropic", "claude-haiku-4-5") is None


def test_half_open_permits_are_spent_by_the_scheduler_not_by_calls(redis_client):
    b = Breakers(redis_client, make_config())
    half_open(b)
    assert state(b, PROVIDER).state == "half_open"
    assert b.admit(P, M) is None, "a half-open scope lets a call through"
    assert b.allowances()[PROVIDER] == 2, "admitting spends no permit"
    b.take({PROVIDER: 1, MODEL: 1})
    assert b.allowances()[PROVIDER] == 1
    b.take({PROVIDER: 5, MODEL: 5})
    assert b.allowances()[PROVIDER] == 0 and b.allowances()[MODEL] == 0
    assert b.admit(P, M) is None, "probes already sent still go"


def test_take_leaves_closed_and_open_scopes_alone(redis_client):
    b = Breakers(redis_client, make_config())
    record(b, "FFFF")  # the provider and gpt-4o open
    b.take({PROVIDER: 1, "model:gpt-4o-mini": 3})
    assert b.allowances()[PROVIDER] == 0 and b.allowances()["model:gpt-4o-mini"] is None
    assert state(b, PROVIDER).state == "open"


def test_probes_that_succeed_close_it(redis_client):
    b = Breakers(redis_client, make_config())
    half_open(b)
    b.take({PROVIDER: 2, MODEL: 2})
    record(b, "S")
    assert state(b, PROVIDER).state == "half_open"
    record(b, "S")
    s = state(b, PROVIDER)
    assert (s.state, s.calls, s.failures, s.consecutive_failures) == ("closed", 0, 0, 0)
    assert s.opened_at is None and s.retry_at is None and s.transitions == 3
    assert b.allowances()[PROVIDER] is None and b.allowances()[MODEL] is None
    assert b.transitions(1)[0]["reason"] == "2 probes succeeded"


def test_a_probe_that_fails_opens_it_again(redis_client):
    b = Breakers(redis_client, make_config())
    half_open(b)
    assert b.admit(P, M) is None
    record(b, "F")
    s = state(b, PROVIDER)
    assert s.state == "open" and s.retry_at == pytest.approx(s.opened_at + OPEN_S)
    assert b.admit(P, M) == PROVIDER
    assert b.transitions(1)[0]["reason"] == "probe failed"
    time.sleep(OPEN_S * 2)
    assert b.allowances()[PROVIDER] == 2


def test_lost_probe_permits_are_handed_out_afresh(redis_client):
    b = Breakers(redis_client, make_config(timeout_s=0.2))  # probe timeout 0.2 + 0.4 s
    half_open(b)
    b.take({PROVIDER: 2, MODEL: 2})
    record(b, "S")  # one verdict; the other probe's worker dies
    assert b.allowances()[PROVIDER] == 0
    time.sleep(0.2)
    assert b.allowances()[PROVIDER] == 0, "not before the timeout"
    time.sleep(1.1)
    assert b.allowances()[PROVIDER] == 1  # one more success closes it
    b.take({PROVIDER: 1, MODEL: 1})
    record(b, "S")
    assert state(b, PROVIDER).state == "closed"


def test_unavailable_opens_the_provider_for_unavailable_s(redis_client):
    b = Breakers(redis_client, make_config(open_s=0.2, unavailable_s=1.2))
    record(b, "U")
    provider, model = state(b, PROVIDER), state(b, MODEL)
    assert provider.state == "open" and provider.retry_at == pytest.approx(provider.opened_at + 1.2)
    assert (model.state, model.failures) == ("closed", 1), "a failure for the model"
    assert b.transitions(1)[0]["reason"] == "unavailable: auth or quota"
    time.sleep(0.5)  # past open_s, not unavailable_s
    assert b.admit(P, M) == PROVIDER
    time.sleep(1.0)
    assert b.allowances()[PROVIDER] == 2
    assert b.transitions(1)[0]["reason"] == "unavailable_s passed"


def test_an_open_model_refuses_under_a_half_open_provider(redis_client):
    b = Breakers(redis_client, make_config(open_s=1.0, unavailable_s=0.2))
    record(b, "U", model=OTHER_M)  # the provider opens for 0.2 s
    record(b, "FFFF")  # gpt-4o opens for 1 s
    time.sleep(0.4)
    allowances = b.allowances()
    assert allowances[PROVIDER] == 2 and allowances[MODEL] == 0
    assert b.admit(P, M) == MODEL
    assert b.admit(P, OTHER_M) is None


def test_old_failures_leave_the_window(redis_client):
    b = Breakers(redis_client, make_config(window_s=1))
    record(b, "FFF")
    assert state(b, PROVIDER).failures == 3
    time.sleep(1.5)  # into a later second: the bucket is stale
    assert state(b, PROVIDER).calls == 0
    record(b, "FSSS")  # 1 of 4, the earlier three no longer count
    s = state(b, PROVIDER)
    assert (s.state, s.calls, s.failures) == ("closed", 4, 1)
    fields = redis_client.hkeys(redis_keys.breaker(PROVIDER))
    assert len([f for f in fields if f.startswith(b"c")]) == 1, "one bucket per second % window"


def test_record_queues_on_the_callers_pipeline(redis_client):
    b = Breakers(redis_client, make_config())
    with redis_client.pipeline() as pipe:
        pipe.set("other-work", 1)
        for _ in range(4):
            b.record(P, M, "failure", pipe=pipe)
        assert state(b, PROVIDER).calls == 0, "nothing sent before execute"
        replies = pipe.execute()
    assert replies[0] is True and len(replies) == 5
    assert state(b, PROVIDER).state == "open" and state(b, MODEL).state == "open"
    assert {t["scope"] for t in b.transitions()} == {PROVIDER, MODEL}


def test_transitions_are_listed_newest_first_capped_and_logged(redis_client, caplog):
    b = Breakers(redis_client, make_config())
    redis_client.rpush(redis_keys.breaker_transitions(), *["{}"] * 1100)
    with caplog.at_level(logging.WARNING, logger="workers.breakers"):
        half_open(b)
        b.admit(P, M)
        record(b, "F")
    provider = [t for t in b.transitions(50) if t.get("scope") == PROVIDER]
    assert [(t["from"], t["to"], t["reason"]) for t in provider] == [
        ("half_open", "open", "probe failed"),
        ("open", "half_open", "open_s passed"),
        ("closed", "open", "failure rate 1.00 over 2 s (4 calls)"),
    ]
    assert provider[0]["at"] >= provider[1]["at"] >= provider[2]["at"]
    assert redis_client.llen(redis_keys.breaker_transitions()) == 1000
    assert len(b.transitions(limit=2)) == 2
    assert state(b, PROVIDER).transitions == 3
    logged = [r.getMessage() for r in caplog.records if PROVIDER in r.getMessage()]
    assert len(logged) == 3 and "probe failed" in logged[-1]


def test_breaker_keys_expire_when_idle_but_not_while_open(redis_client):
    b = Breakers(redis_client, make_config(unavailable_s=60.0))
    record(b, "S", model=OTHER_M)
    ttl = redis_client.pttl(redis_keys.breaker(PROVIDER))
    assert 0 < ttl < 120_000
    record(b, "U")
    assert redis_client.pttl(redis_keys.breaker(PROVIDER)) > 60_000


def test_two_processes_share_one_breaker(redis_client, redis_server):
    other_client = redis.Redis.from_url(redis_server.url)
    try:
        one = Breakers(redis_client, make_config())
        two = Breakers(other_client, make_config())
        record(one, "FF")
        record(two, "FF")
        assert one.admit(P, M) == PROVIDER and two.admit(P, M) == PROVIDER
        time.sleep(OPEN_S * 2)
        assert one.allowances()[PROVIDER] == 2
        two.take({PROVIDER: 2})
        assert one.allowances()[PROVIDER] == 0, "two permits in all, not per process"
        assert one.states() == two.states()
    finally:
        other_client.close()


def test_admit_and_record_fail_open_when_redis_is_down(caplog):
    # No retries: redis-py's default would back off for about 5 s per call before raising.
    down = redis.Redis(port=free_port(), socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    b = Breakers(down, make_config())
    with caplog.at_level(logging.WARNING, logger="workers.breakers"):
        assert b.admit(P, M) is None
        b.record(P, M, "failure")
        assert b.admit(P, M) is None
    assert len(caplog.records) == 1, "one warning per 10 s"
    with pytest.raises(redis.RedisError):
        b.allowances()
