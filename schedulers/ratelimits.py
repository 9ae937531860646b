"""Provider rate limits: RPM and TPM token buckets in Redis, shared by every process.

Celery's ``rate_limit`` is per worker; a provider's limit is per key. So each provider (and each
model that has its own limits) has a requests bucket and a tokens bucket in Redis, refilled from
Redis's clock by one script (``ratelimits.lua``). The scheduler takes from them when it
dispatches; workers give back unused token estimates, clamp a bucket to what a provider's
``x-ratelimit-remaining-*`` / ``anthropic-ratelimit-*-remaining`` headers say is left, and on a
429 empty it and block the scope for the ``retry-after`` the provider asked for.

Sizing, so a provider never sees more than its limit in any minute. A bucket holds at most
``capacity = rate × burst_s`` and refills at ``rate``; in any span of ``T`` seconds it lets out
at most ``capacity + rate × T``. Requests reach the provider a little after dispatch, and not
all equally late, so the provider's minute can span up to ``60 + JITTER_S`` seconds of
dispatches; ``capacity + rate × (60 + JITTER_S) = limit`` makes even that span hold the limit.
The cost is about ``(burst_s + JITTER_S) / 60`` of the steady rate (5% with the defaults); how
close a drain comes to the ideal minute is measured by ``scripts/bench_quota.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import redis

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.pipelines import execute_unchecked
from workers.providers.base import RateSignal

#: How much later than its dispatch one request may reach the provider compared to another.
JITTER_S = 1.0
#: A team's runaway guard at dispatch lets this many seconds of its limits go at once.
GUARD_BURST_S = 2.0
#: Wait this long after a 429 that named no ``retry-after``.
DEFAULT_BACKOFF_S = 1.0

_SCRIPT = (Path(__file__).parent / "ratelimits.lua").read_text()
_BLOCK = (Path(__file__).parent / "ratelimit_block.lua").read_text()


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    capacity: float
    rate: float  # per second
    tokens: bool  # True: counts tokens (TPM); False: counts requests (RPM)

    @classmethod
    def per_minute(cls, scope: str, kind: str, limit: int, burst_s: float) -> Bucket:
        """Sized so that ``capacity + rate × (60 + JITTER_S)`` is at most ``limit``.

        The capacity is at least one (one request must fit); for a limit under two per minute
        that alone would break the bound, so the refill keeps half the limit: whole requests
        still never exceed it.
        """
        capacity = max(1.0, limit * burst_s / (60.0 + burst_s + JITTER_S))
        rate = max(limit - capacity, limit / 2) / (60.0 + JITTER_S)
        return cls(redis_keys.rate_bucket(scope, kind), capacity, rate, kind == "tpm")

    def amount(self, tokens: int) -> float:
        return float(tokens) if self.tokens else 1.0


def provider_scope(name: str) -> str:
    return f"provider:{name}"


def team_scope(team: str) -> str:
    return f"team:{team}"


def feature_scope(team: str, feature: str) -> str:
    return f"feature:{team}:{feature}"


def model_scope(name: str) -> str:
    return f"model:{name}"


class RateLimits:
    def __init__(self, client: redis.Redis, config: BrokerConfig) -> None:
        self._redis = client
        self._script = client.register_script(_SCRIPT)
        self._block = client.register_script(_BLOCK)
        self._buckets: dict[str, list[Bucket]] = {}
        for p in config.providers:
            self._buckets[provider_scope(p.name)] = _buckets(
                provider_scope(p.name), p.rpm, p.tpm, p.burst_s
            )
        for m in config.models:
            burst_s = config.provider(m.provider).burst_s
            self._buckets[model_scope(m.name)] = _buckets(
                model_scope(m.name), m.rpm, m.tpm, burst_s
            )
        self._joined: dict[tuple[str, str, str | None, str | None], list[Bucket]] = {}
        self.all_buckets = [b for bs in self._buckets.values() for b in bs]
        self.scopes = list(self._buckets)
        # The runaway guard: a team's (and its features') own requests and tokens per minute,
        # at dispatch (these buckets, sized like a provider's) and at submission (a minute's
        # worth may arrive at once; see admit).
        self._guards: dict[str, list[Bucket]] = {}
        self._submission: dict[str, list[Bucket]] = {}
        for team in config.teams:
            limits = {team_scope(team.id): (team.rpm, team.tpm)}
            for feature, feature_limits in team.feature_limits.items():
                limits[feature_scope(team.id, feature)] = (feature_limits.rpm, feature_limits.tpm)
            for scope, (rpm, tpm) in limits.items():
                self._guards[scope] = _buckets(scope, rpm, tpm, GUARD_BURST_S)
                self._submission[scope] = [
                    Bucket(
                        redis_keys.rate_bucket(f"submit:{scope}", kind),
                        limit,
                        limit / 60.0,
                        kind == "tpm",
                    )
                    for kind, limit in (("rpm", rpm), ("tpm", tpm))
                    if limit
                ]
        self.all_buckets += [b for bs in self._guards.values() for b in bs]

    def provider_buckets(self, provider: str) -> list[Bucket]:
        return self._buckets[provider_scope(provider)]

    def buckets(
        self, provider: str, model: str, team: str | None = None, feature: str | None = None
    ) -> list[Bucket]:
        """Every bucket a call of ``model`` on ``provider`` draws from, with the runaway guard
        of ``team`` and its ``feature`` when given."""
        key = (provider, model, team, feature)
        found = self._joined.get(key)
        if found is None:
            found = self._buckets[provider_scope(provider)] + self._buckets.get(
                model_scope(model), []
            )
            if team is not None:
                found = found + self._guards.get(team_scope(team), [])
                if feature is not None:
                    found = found + self._guards.get(feature_scope(team, feature), [])
            self._joined[key] = found
        return found

    def admit(self, team: str, feature: str, requests: int, tokens: int) -> float | None:
        """Submission side of the runaway guard: take ``requests`` and ``tokens`` from the
        team's and the feature's submission buckets, all or none. Returns None when admitted,
        else the seconds until they would be. A batch larger than a bucket goes when the bucket
        is full, and the next waits for it to refill."""
        buckets = self._submission.get(team_scope(team), []) + self._submission.get(
            feature_scope(team, feature), []
        )
        if not buckets:
            return None
        argv: list[object] = ["admit"]
        for bucket in buckets:
            amount = tokens if bucket.tokens else requests
            argv += [repr(bucket.capacity), repr(bucket.rate), amount]
        reply = self._script(keys=[b.key for b in buckets], args=argv)
        return None if int(reply[0]) == 1 else float(reply[1])

    def admit_key(self, key_sha256: str, per_minute: int) -> float | None:
        """One submission by one API key (told by its digest): a minute's worth may come at
        once, then ``per_minute`` spread over the minute. None when admitted, else the seconds
        until it would be."""
        bucket = Bucket(
            redis_keys.rate_bucket(f"submit:key:{key_sha256[:32]}", "rpm"),
            float(per_minute),
            per_minute / 60.0,
            False,
        )
        argv = ["admit", repr(bucket.capacity), repr(bucket.rate), 1]
        reply = self._script(keys=[bucket.key], args=argv)
        return None if int(reply[0]) == 1 else float(reply[1])

    def state(self) -> tuple[dict[str, float], set[str]]:
        """Current level of every bucket, and the scopes blocked after a 429."""
        with self._redis.pipeline(transaction=False) as pipe:
            self._run(pipe, "take", {b: 0.0 for b in self.all_buckets})
            for scope in self.scopes:
                pipe.exists(redis_keys.rate_blocked(scope))
            replies = execute_unchecked(pipe)
        levels = {}
        if self.all_buckets:
            levels = {b.key: float(v) for b, v in zip(self.all_buckets, replies[0])}
            replies = replies[1:]
        blocked = {scope for scope, hit in zip(self.scopes, replies) if hit}
        return levels, blocked

    def take(self, pipe: redis.client.Pipeline, amounts: dict[Bucket, float]) -> None:
        """Queue taking ``amounts`` (negative: giving back) on ``pipe``."""
        self._run(pipe, "take", amounts)

    def refund_tokens(
        self, pipe: redis.client.Pipeline, provider: str, model: str, unused: int
    ) -> None:
        """Worker side: give back the part of the token estimate the call did not use."""
        if unused > 0:
            self._run(
                pipe, "take", {b: -float(unused) for b in self.buckets(provider, model) if b.tokens}
            )

    def observe(
        self, pipe: redis.client.Pipeline, provider: str, model: str, signal: RateSignal
    ) -> None:
        """Worker side: no bucket may hold more than the provider says remains."""
        clamp = {}
        for bucket in self.buckets(provider, model):
            remaining = signal.remaining_tokens if bucket.tokens else signal.remaining_requests
            if remaining is not None:
                clamp[bucket] = float(remaining)
        self._run(pipe, "clamp", clamp)

    def back_off(
        self, pipe: redis.client.Pipeline, provider: str, model: str, retry_after_s: float | None
    ) -> None:
        """Worker side, on a 429: empty the buckets and block the scope for ``retry-after``.

        The model's own scope is blocked when it has limits of its own (providers such as
        OpenAI limit per model), the whole provider otherwise.
        """
        scope = (
            model_scope(model)
            if self._buckets.get(model_scope(model))
            else provider_scope(provider)
        )
        wait_ms = max(1, math.ceil((retry_after_s or DEFAULT_BACKOFF_S) * 1000))
        # The longest ask wins: a later 429 with a shorter retry-after must not cut it short.
        self._block(keys=[redis_keys.rate_blocked(scope)], args=[wait_ms], client=pipe)
        self._run(pipe, "clamp", {b: 0.0 for b in self.buckets(provider, model)})

    def _run(self, pipe: redis.client.Pipeline, op: str, amounts: dict[Bucket, float]) -> None:
        if not amounts:
            return
        argv: list[object] = [op]
        for bucket, amount in amounts.items():
            argv += [repr(bucket.capacity), repr(bucket.rate), repr(amount)]
        self._script(keys=[b.key for b in amounts], args=argv, client=pipe)


def _buckets(scope: str, rpm: int | None, tpm: int | None, burst_s: float) -> list[Bucket]:
    out = []
    if rpm:
        out.append(Bucket.per_minute(scope, "rpm", rpm, burst_s))
    if tpm:
        out.append(Bucket.per_minute(scope, "tpm", tpm, burst_s))
    return out
