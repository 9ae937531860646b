"""Circuit breakers per provider and per model, shared by every process through Redis.

A failing provider (or one failing model of it) should stop receiving calls, everywhere at once,
and be tried again carefully. Each scope (the rate limits' ``provider:<name>`` and
``model:<name>``) has a breaker in one Redis hash, moved only by one script (``breakers.lua``) on
Redis's clock, so the scheduler and every worker process see one consistent state:

- **closed**: calls go. Outcomes are counted in a ring of per-second buckets over ``window_s``;
  at least ``min_calls`` calls with a failure share of ``failure_rate`` or more, or
  ``consecutive_failures`` failures in a row, open it.
- **open**: nothing goes for ``open_s`` (``unavailable_s`` after an auth failure or exhausted
  quota, which opens the provider at once: the account is the problem, not the calls).
- **half-open**: ``probes`` permits are handed out; as many successes close it (window and run
  reset), any failure opens it again. Permits handed out that get no verdict within the
  provider's ``timeout_s`` + ``open_s`` (a probe lost with its worker) are handed out afresh.

The scheduler asks :meth:`Breakers.allowances` once per round and dispatches within them; a
worker asks :meth:`Breakers.admit` right before each call (another worker may have tripped the
breaker since dispatch) and :meth:`Breakers.record` after it, on the pipeline it already sends.
A breaker must never stop calls because Redis is briefly down: ``admit`` and ``record`` fail open.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import redis

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.pipelines import Pipelines
from schedulers.ratelimits import model_scope, provider_scope

log = logging.getLogger(__name__)

Outcome = Literal["success", "failure", "unavailable"]
BreakerStatus = Literal["closed", "open", "half_open"]

#: At most one warning per this many seconds while Redis is unreachable.
WARN_EVERY_S = 10.0

_SCRIPT = (Path(__file__).parent / "breakers.lua").read_text()


@dataclass(frozen=True, slots=True)
class BreakerState:
    scope: str
    state: BreakerStatus
    calls: int
    failures: int
    failure_rate: float
    consecutive_failures: int
    opened_at: float | None
    retry_at: float | None
    transitions: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class Breakers:
    def __init__(
        self, client: redis.Redis, config: BrokerConfig, pipelines: Pipelines | None = None
    ) -> None:
        self._redis = client
        self._pipelines = pipelines or Pipelines(client)  # for admit, a worker's hot path
        self._script = client.register_script(_SCRIPT)
        b = config.breakers
        self._settings: list[object] = [
            b.window_s,
            b.min_calls,
            repr(b.failure_rate),
            b.consecutive_failures,
            repr(b.open_s),
            b.probes,
            repr(b.unavailable_s),
        ]
        # Scope → how long a half-open scope waits for its probes' verdict.
        self._probe_timeouts: dict[str, float] = {}
        for p in config.providers:
            self._probe_timeouts[provider_scope(p.name)] = p.timeout_s + b.open_s
        for m in config.models:
            timeout = config.provider(m.provider).timeout_s + b.open_s
            self._probe_timeouts[model_scope(m.name)] = timeout
        self._default_timeout = max(self._probe_timeouts.values(), default=60.0 + b.open_s)
        self.scopes = list(self._probe_timeouts)
        self._warned_at = float("-inf")

    def allowances(self) -> dict[str, int | None]:
        """Per scope: None closed, 0 refusing (open, or half-open with no permit left), k > 0
        half-open with k permits left. Moves open scopes whose time is up to half-open.
        Raises ``redis.RedisError`` (the scheduler retries its round)."""
        reply = self._run("allowances", self.scopes)
        self._log(reply[1])
        return {s: None if int(a) < 0 else int(a) for s, a in zip(self.scopes, reply[0])}

    def take(self, probes: dict[str, int]) -> None:
        """The scheduler dispatched this many probes to each of these half-open scopes: their
        permits are spent, so later rounds send no more until the verdict (or until the probes
        are deemed lost and the permits renewed). Raises ``redis.RedisError``."""
        if probes:
            self._log(self._run("take", list(probes), [str(n) for n in probes.values()])[0])

    def admit(self, provider: str, model: str) -> str | None:
        """None when a call of ``model`` on ``provider`` may go now, else the open scope that
        refuses (a half-open scope lets calls through: the scheduler rations its probes).
        Fails open."""
        scopes = [provider_scope(provider), model_scope(model)]
        try:
            (reply,) = self._pipelines.run(lambda pipe: self._run("admit", scopes, pipe=pipe))
        except redis.RedisError as exc:
            self._warn(exc)
            return None
        self._log(reply[1])
        refused = _text(reply[0])
        return refused or None

    def record(
        self,
        provider: str,
        model: str,
        outcome: Outcome,
        pipe: redis.client.Pipeline | None = None,
    ) -> None:
        """Count a call's outcome for its provider and model scopes; queued on ``pipe`` when
        given (its transitions then go to the Redis log only). "unavailable" opens the provider
        scope and is a failure for the model's. Fails open."""
        model_outcome = "failure" if outcome == "unavailable" else outcome
        scopes = {provider_scope(provider): outcome, model_scope(model): model_outcome}
        try:
            reply = self._run("record", list(scopes), list(scopes.values()), pipe)
        except redis.RedisError as exc:
            self._warn(exc)
            return
        if pipe is None:
            self._log(reply[0])

    def states(self) -> list[BreakerState]:
        """Every configured scope's breaker, for the admin API."""
        reply = self._run("states", self.scopes)
        self._log(reply[1])
        out = []
        for scope, row in zip(self.scopes, reply[0]):
            state, calls, failures, run, opened_at, retry_at, n = row
            calls, failures = int(calls), int(failures)
            out.append(
                BreakerState(
                    scope=scope,
                    state=_text(state),  # type: ignore[arg-type]
                    calls=calls,
                    failures=failures,
                    failure_rate=failures / calls if calls else 0.0,
                    consecutive_failures=int(run),
                    opened_at=_seconds(opened_at),
                    retry_at=_seconds(retry_at),
                    transitions=int(n),
                )
            )
        return out

    def transitions(self, limit: int = 100) -> list[dict]:
        """Recent transitions, newest first: {scope, from, to, at, reason}."""
        if limit <= 0:
            return []
        entries = self._redis.lrange(redis_keys.breaker_transitions(), 0, limit - 1)
        return [json.loads(e) for e in entries]

    def _run(
        self,
        op: str,
        scopes: list[str],
        outcomes: list[str] | None = None,
        pipe: redis.client.Pipeline | None = None,
    ):
        argv: list[object] = [op, *self._settings]
        for i, scope in enumerate(scopes):
            argv += [scope, repr(self._probe_timeouts.get(scope, self._default_timeout))]
            if outcomes is not None:
                argv.append(outcomes[i])
        script_keys = [redis_keys.breaker_transitions()] + [redis_keys.breaker(s) for s in scopes]
        return self._script(keys=script_keys, args=argv, client=pipe or self._redis)

    def _log(self, made: list) -> None:
        for entry in made:
            t = json.loads(entry)
            log.warning("breaker %s: %s → %s (%s)", t["scope"], t["from"], t["to"], t["reason"])

    def _warn(self, exc: redis.RedisError) -> None:
        now = time.monotonic()
        if now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("breakers: Redis unavailable, letting calls through (%s)", exc)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _seconds(value: bytes | str) -> float | None:
    text = _text(value)
    return float(text) if text else None
