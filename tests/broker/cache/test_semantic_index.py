"""The shared semantic index on a private Redis: search, scopes, TTL, cap, purge, faults."""

from __future__ import annotations

import time

import numpy as np
import pytest
import redis

from broker.cache.semantic import CacheUnavailable
from broker.cache.semantic.index import SemanticIndex, scope_keys


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def index(redis_client: redis.Redis) -> SemanticIndex:
    return SemanticIndex(redis_client, prefix="t:sem", max_entries=5)


def test_finds_the_nearest_entry_with_its_cosine(index: SemanticIndex) -> None:
    for i in range(4):
        index.add("team:a:", unit(i), f"payload-{i}", ttl_s=60)
    ((payload, cosine),) = index.search("team:a:", unit(2) + 0.01 * unit(9))
    assert payload == "payload-2"
    assert 0.99 < cosine <= 1.0001
    top = index.search("team:a:", unit(1), k=3)
    assert [p for p, _ in top][0] == "payload-1" and len(top) == 3
    assert top[0][1] >= top[1][1] >= top[2][1]


def test_scopes_never_mix(index: SemanticIndex) -> None:
    index.add("team:a:", unit(1), "a-answer", ttl_s=60)
    assert index.search("team:b:", unit(1)) == []


def test_another_process_sees_new_entries_incrementally(redis_client: redis.Redis) -> None:
    writer = SemanticIndex(redis_client, prefix="t:sem")
    reader = SemanticIndex(redis_client, prefix="t:sem")
    writer.add("s:", unit(1), "first", ttl_s=60)
    assert reader.search("s:", unit(1))[0][0] == "first"
    writer.add("s:", unit(2), "second", ttl_s=60)
    assert reader.search("s:", unit(2))[0][0] == "second"


def test_expired_entries_are_not_returned(index: SemanticIndex) -> None:
    index.add("s:", unit(1), "short", ttl_s=1)
    index.add("s:", unit(2), "long", ttl_s=60)
    assert index.search("s:", unit(1))[0][0] == "short"
    time.sleep(1.1)
    assert [p for p, _ in index.search("s:", unit(1), k=5)] == ["long"]


def test_cap_evicts_the_oldest_in_redis_and_in_mirrors(redis_client: redis.Redis) -> None:
    reader = SemanticIndex(redis_client, prefix="t:sem", max_entries=3)
    writer = SemanticIndex(redis_client, prefix="t:sem", max_entries=3)
    writer.add("s:", unit(0), "p0", ttl_s=60)
    assert reader.search("s:", unit(0))[0][0] == "p0"
    for i in range(1, 5):
        writer.add("s:", unit(i), f"p{i}", ttl_s=60)
    assert writer.size("s:") == 3
    assert sorted(p for p, _ in reader.search("s:", unit(0), k=10)) == ["p2", "p3", "p4"]


def test_purge_by_prefix_and_flush_leave_a_cold_cache(index: SemanticIndex, redis_client) -> None:
    index.add("team:a:f1:", unit(1), "a1", ttl_s=60)
    index.add("team:a:f2:", unit(2), "a2", ttl_s=60)
    index.add("team:b:f1:", unit(3), "b1", ttl_s=60)
    assert index.search("team:a:f1:", unit(1))
    assert index.purge("team:a:") > 0
    assert index.search("team:a:f1:", unit(1)) == []
    assert index.search("team:b:f1:", unit(3))[0][0] == "b1"
    other = SemanticIndex(redis_client, prefix="t:sem")
    assert other.search("team:b:f1:", unit(3))[0][0] == "b1"
    redis_client.flushdb()
    assert other.search("team:b:f1:", unit(3)) == []
    other.add("team:b:f1:", unit(4), "b4", ttl_s=60)
    assert other.search("team:b:f1:", unit(4))[0][0] == "b4"


def test_corrupt_entries_are_ignored(index: SemanticIndex, redis_client) -> None:
    index.add("s:", unit(1), "good", ttl_s=60)
    vec_key = scope_keys("t:sem", "s:")[0]
    bad_id = "corrupt"
    redis_client.hset(vec_key, bad_id, b"\x00\x01\x02")  # not float32 of the right length
    redis_client.hset(scope_keys("t:sem", "s:")[1], bad_id, "bad")
    redis_client.zadd(scope_keys("t:sem", "s:")[2], {bad_id: (time.time() + 60) * 1000})
    redis_client.zadd(scope_keys("t:sem", "s:")[3], {bad_id: 1000})
    fresh = SemanticIndex(redis_client, prefix="t:sem")
    assert [p for p, _ in fresh.search("s:", unit(1), k=5)] == ["good"]


def test_redis_down_raises_cache_unavailable() -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    index = SemanticIndex(dead, prefix="t:sem")
    with pytest.raises(CacheUnavailable):
        index.add("s:", unit(1), "x", ttl_s=60)
    with pytest.raises(CacheUnavailable):
        index.search("s:", unit(1))
    with pytest.raises(CacheUnavailable):
        index.purge("s:")


def test_keys_have_a_ttl_so_idle_scopes_vanish(index: SemanticIndex, redis_client) -> None:
    index.add("s:", unit(1), "x", ttl_s=30)
    for key in scope_keys("t:sem", "s:"):
        assert 0 < redis_client.pttl(key) <= 90_000
