"""The exact cache's key, scope and entries, on a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from broker import redis_keys
from broker.cache.exact import CachedAnswer, ExactCache, request_key, scope_of
from broker.config.cache import CacheConfig, CachePolicy, PolicyOverride

PAYLOAD = {
    "messages": [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Classify: the battery life is great"},
    ],
    "max_tokens": 16,
    "temperature": 0.0,
}


def answer(key: str, output: str = "positive", cost: int = 120) -> CachedAnswer:
    return CachedAnswer(
        key, "req_a_0", "gpt-4o-mini", "sim-openai", output, "stop", 10, 0, 2, cost, time.time()
    )


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.5},
        {"max_tokens": 17},
        {"top_p": 0.9},
        {"stop": ["\n"]},
        {"seed": 7},
        {"tools": [{"type": "function", "function": {"name": "f"}}]},
        {"tool_choice": "auto"},
        {"response_format": {"type": "json_object"}},
        {"provider_extra": {"logit_bias": {"1": 5}}},
        {"messages": [PAYLOAD["messages"][1]]},  # the system prompt dropped
        {"messages": [{"role": "system", "content": "You are verbose."}, PAYLOAD["messages"][1]]},
    ],
)
def test_every_field_that_changes_the_output_changes_the_key(change):
    base = request_key("team:product", "gpt-4o-mini", PAYLOAD)
    assert request_key("team:product", "gpt-4o-mini", {**PAYLOAD, **change}) != base


def test_the_key_is_canonical_and_covers_scope_and_model():
    reordered = dict(reversed(list(PAYLOAD.items())))
    key = request_key("team:product", "gpt-4o-mini", PAYLOAD)
    assert request_key("team:product", "gpt-4o-mini", reordered) == key
    assert request_key("team:content", "gpt-4o-mini", PAYLOAD) != key
    assert request_key("team:product", "gpt-4o", PAYLOAD) != key


def test_scopes():
    team, shared, user = (CachePolicy(scope=s) for s in ("team", "shared", "user"))
    assert scope_of(team, "product", "chatbot", None) == "team:product"
    assert scope_of(shared, "product", "search", None) == "shared:search"
    assert scope_of(user, "product", "chatbot", {"user_id": "u1"}) == "user:product:u1"
    assert scope_of(user, "product", "chatbot", {}) is None  # no user id: not cached
    assert scope_of(CachePolicy(mode="off"), "product", "chatbot", None) is None


def test_policies_resolve_most_specific_first():
    config = CacheConfig(
        ttl_s=100,
        policies=[
            PolicyOverride(team="product", ttl_s=200),
            PolicyOverride(feature="chatbot", mode="semantic", ttl_s=300),
            PolicyOverride(team="product", feature="chatbot", scope="user"),
        ],
    )
    assert config.policy("content", "search").ttl_s == 100
    assert config.policy("product", "search").ttl_s == 200
    both = config.policy("product", "chatbot")
    assert (both.mode, both.ttl_s, both.scope) == ("semantic", 300, "user")


def test_put_get_purge(redis_client):
    cache = ExactCache(redis_client)
    key = request_key("team:product", "gpt-4o-mini", PAYLOAD)
    assert cache.put(answer(key), 60, "product", "classification")
    assert cache.get_many([key])[key].output == "positive"
    assert 0 < redis_client.ttl(redis_keys.cache_entry(key)) <= 60
    assert cache.purge(team="content") == 0 and cache.get_many([key])
    assert cache.purge(team="product", feature="classification") == 1
    assert cache.get_many([key]) == {}


def test_a_corrupt_or_misplaced_entry_is_ignored(redis_client):
    cache = ExactCache(redis_client)
    good, other = "a" * 64, "b" * 64
    redis_client.set(redis_keys.cache_entry(good), "{not json")
    redis_client.set(redis_keys.cache_entry(other), answer(good).encode())  # names another key
    bad_types = answer("c" * 64).encode().replace('"output":"positive"', '"output":5')
    redis_client.set(redis_keys.cache_entry("c" * 64), bad_types)
    assert cache.get_many([good, other, "c" * 64]) == {}


def test_redis_down_is_a_miss_not_an_error():
    dead = redis.Redis(port=1, socket_connect_timeout=0.2)
    cache = ExactCache(dead)
    assert cache.get_many(["a" * 64]) == {}
    assert cache.put(answer("a" * 64), 60, "product", "chatbot") is False
