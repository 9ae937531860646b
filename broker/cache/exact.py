"""The exact response cache: an answer kept under a key that covers everything that changes it.

The key is the sha256 of one canonical JSON document (sorted keys, no spaces): the scope, the
model asked for, and the request's whole payload as it goes to the provider (every message,
the system prompt among them, and every parameter: ``temperature``, ``max_tokens`` and
whatever else a request carries, ``top_p``, ``stop``, ``seed``, ``tools``, ``tool_choice``,
``response_format`` or a provider's extras). Nothing is left out by a list of fields to keep,
so a field added later is in the key from its first day.

The scope is in the key, so an answer is only ever found by a request of the same scope:
``team:<team>`` by default, ``user:<team>:<user_id>``, or ``shared:<feature>`` (every team's
requests for that feature; public content only).

An entry is JSON, checked when read: one that does not parse, lacks a field, or names another
key is ignored (and logged), never served. The cache is never a point of failure: a Redis error
while reading is a miss, while writing a lost entry, both logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import redis

from broker import jsontext, redis_keys
from broker.config.cache import CachePolicy

log = logging.getLogger(__name__)

_CHUNK = 1_000
_INDEX_TTL_S = 91 * 86_400  # longer than any entry may live


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """What a hit serves: the original answer, and what it cost the request that paid for it."""

    key: str
    source_request_id: str
    model: str
    provider: str
    output: str
    finish_reason: str | None
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_micros: int
    stored_at: float
    stop_sequence: str | None = None  # entries kept before it was recorded have none

    def encode(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def decode(cls, key: str, raw: bytes | str) -> CachedAnswer | None:
        """The entry, or None if it is corrupt or names another key (never served)."""
        try:
            data = json.loads(raw)
            answer = cls(**data)
        except (ValueError, TypeError) as exc:
            log.warning("cache entry %s is corrupt (%s): ignored", key[:12], exc)
            return None
        ints = (answer.input_tokens, answer.cached_input_tokens, answer.output_tokens)
        if (
            answer.key != key
            or not isinstance(answer.output, str)
            or not isinstance(answer.stop_sequence, str | None)
            or not all(isinstance(n, int) and n >= 0 for n in (*ints, answer.cost_micros))
        ):
            log.warning("cache entry %s does not match its key or types: ignored", key[:12])
            return None
        return answer


def scope_of(
    policy: CachePolicy, team: str, feature: str, metadata: Mapping[str, Any] | None
) -> str | None:
    """Who may share an answer, or None when the request may not be cached at all (``off``,
    or ``user`` scope without a ``metadata.user_id``)."""
    if policy.mode == "off":
        return None
    if policy.scope == "shared":
        return f"shared:{feature}"
    if policy.scope == "user":
        user = (metadata or {}).get("user_id")
        return None if user in (None, "") else f"user:{team}:{user}"
    return f"team:{team}"


def request_key(scope: str, model: str, payload: Mapping[str, Any]) -> str:
    """The cache key of a request: sha256 hex of its canonical form (see the module doc)."""
    document = {"v": 1, "scope": scope, "model": model, "payload": payload}
    return hashlib.sha256(jsontext.canonical(document)).hexdigest()


def put_on(
    pipe: redis.client.Pipeline, answer: CachedAnswer, ttl_s: int, team: str, feature: str
) -> None:
    """Queue :meth:`ExactCache.put` on ``pipe`` (for a caller that has more to send with it)."""
    index = redis_keys.cache_index(team, feature)
    pipe.set(redis_keys.cache_entry(answer.key), answer.encode(), ex=ttl_s)
    pipe.sadd(index, answer.key)
    pipe.expire(index, _INDEX_TTL_S)


class ExactCache:
    """Answers by key in Redis, shared by every process."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedAnswer]:
        """The cached answers among ``keys``; a Redis error is a miss for all of them."""
        wanted = sorted(set(keys))
        found: dict[str, CachedAnswer] = {}
        try:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                values = self._redis.mget([redis_keys.cache_entry(k) for k in chunk])
                for key, raw in zip(chunk, values):
                    if raw is not None and (answer := CachedAnswer.decode(key, raw)) is not None:
                        found[key] = answer
        except redis.RedisError as exc:
            log.warning("cache unavailable, taking the plain path: %s", exc)
            return {}
        return found

    def put(self, answer: CachedAnswer, ttl_s: int, team: str, feature: str) -> bool:
        """Keep ``answer`` for ``ttl_s`` seconds, listed under the team and feature that paid
        for it (what purging by team or feature removes). False if Redis refused."""
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                put_on(pipe, answer, ttl_s, team, feature)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("cache unavailable, answer %s not kept: %s", answer.key[:12], exc)
            return False
        return True

    def purge(self, team: str | None = None, feature: str | None = None) -> int:
        """Remove the entries a team (and feature), a feature, or everyone stored; returns how
        many index entries were dropped."""
        pattern = redis_keys.cache_index(team or "*", feature or "*")
        removed = 0
        for index in list(self._redis.scan_iter(match=pattern, count=1000)):
            members: Sequence[bytes] = list(self._redis.sscan_iter(index, count=1000))
            with self._redis.pipeline(transaction=False) as pipe:
                for start in range(0, len(members), _CHUNK):
                    chunk = members[start : start + _CHUNK]
                    pipe.delete(*[redis_keys.cache_entry(m.decode()) for m in chunk])
                pipe.delete(index)
                pipe.execute()
            removed += len(members)
        return removed
