"""Which team is served next: weighted fair queueing with virtual token counters (VTC).

After Sheng et al., "Fairness in Serving Large Language Models" (OSDI 2024). Each team has a
counter of the service it has received divided by its weight. The scheduler serves, one request
at a time, the backlogged team with the smallest counter and charges the request's *estimated*
service at dispatch; the worker corrects the charge with the *actual* usage when the attempt
ends. A team that becomes backlogged again is lifted to the smallest counter among the teams
already backlogged (or, if none is, to where the last backlog stood), so idle time cannot be
banked as credit.

The bound the tests check. Let U be the largest single charge (estimated weighted service of
one request divided by its team's weight) and K the number of requests that can be in flight.
While two teams f and g stay backlogged, the team served is always the one with the smaller
counter, so their counters never differ by more than U. A counter differs from the service the
team actually received only by the estimates of its requests still in flight (each at most U),
so the weight-normalised service received differs by at most U + K·U ≤ 2U + K·U.

A request is charged at dispatch what its answer is expected to write, not all of its
``max_tokens``: the mean output of the answers its team's feature has had on its model
(:class:`OutputEstimates`), capped at ``max_tokens``, once there are enough of them. U, and so
the bound, then follows what answers use rather than what requests allow: with ``max_tokens``
ten times the answers' length, the charge at dispatch was ten times the service, and two equal
teams' service drifted apart by as much while the corrections came in.

Counters live in Redis and only the leading scheduler writes them (a standby that takes over
carries on from them); workers add their corrections to a separate hash that the leader folds
in at the start of each round. Within a round the pick is a binary heap over the backlogged
teams: O(log teams) per request, whatever the length of the queues.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterable, Mapping

import redis

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig


class ServiceMeter:
    """Weighted service of a request: what fair queueing counts.

    ``tokens``: input × input_weight + output × output_weight (defaults 1 and 2: output tokens
    cost a provider more). ``cost``: the request's price in micro-dollars at the model's prices.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self._config = config
        self._cost = config.scheduler.service == "cost"
        self._w_in = config.scheduler.input_weight
        self._w_out = config.scheduler.output_weight

    def service(self, model: str, input_tokens: int, output_tokens: int) -> float:
        if not self._cost:
            return input_tokens * self._w_in + output_tokens * self._w_out
        if not self._config.has_model(model):
            return 0.0
        m = self._config.model(model)
        # USD per 1M tokens × tokens = micro-dollars.
        return float(input_tokens * m.input_price + output_tokens * m.output_price)


class Round:
    """One scheduling round's view of the counters: a heap of the backlogged teams.

    The loop looks at :meth:`top`, then either :meth:`charge` s it for a request it dispatched
    (the team goes back into the heap at its new counter) or :meth:`drop` s it for the rest of
    the round (its queues are empty, or its next request cannot go anywhere now).
    """

    def __init__(
        self, counters: dict[str, float], weights: Mapping[str, float], backlogged: Iterable[str]
    ) -> None:
        self.counters = counters
        self._weights = weights
        self.backlogged = list(backlogged)
        self._heap = [(counters[t], t) for t in self.backlogged]
        heapq.heapify(self._heap)
        self.changed: set[str] = set()

    def top(self) -> str | None:
        return self._heap[0][1] if self._heap else None

    def charge(self, service: float) -> float:
        """Charge the top team ``service``; returns the charge in counter units."""
        _, team = self._heap[0]
        units = service / self._weights[team]
        self.counters[team] += units
        self.changed.add(team)
        heapq.heapreplace(self._heap, (self.counters[team], team))
        return units

    def drop(self) -> None:
        heapq.heappop(self._heap)

    def refund(self, team: str, service: float) -> None:
        """Take back a charge for a request that was not sent after all."""
        self.counters[team] -= service / self._weights[team]


class FairQueue:
    """Virtual token counters in Redis, read and written once per round by the leader."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._previous: set[str] | None = None  # backlogged last round; None: just took over

    def start_round(self, backlogged: list[str], weights: Mapping[str, float]) -> Round:
        """Fold in the workers' corrections, lift teams that just became backlogged."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(redis_keys.fair_counters())
            pipe.hgetall(redis_keys.fair_corrections())
            pipe.delete(redis_keys.fair_corrections())
            pipe.get(redis_keys.fair_floor())
            raw_counters, raw_corrections, _, raw_floor = pipe.execute()
        counters = {k.decode(): float(v) for k, v in raw_counters.items()}
        changed = set()
        for key, value in raw_corrections.items():
            team = key.decode()
            if team in weights:
                counters[team] = counters.get(team, 0.0) + float(value) / weights[team]
                changed.add(team)
        for team in backlogged:
            counters.setdefault(team, 0.0)
        new = set() if self._previous is None else set(backlogged) - self._previous
        if new:
            others = [counters[t] for t in backlogged if t not in new]
            base = min(others) if others else float(raw_floor or 0.0)
            for team in new:
                if counters[team] < base:
                    counters[team] = base
                    changed.add(team)
        round_ = Round(counters, weights, backlogged)
        round_.changed |= changed
        return round_

    def finish_round(self, pipe: redis.client.Pipeline, round_: Round) -> None:
        """Queue the writes of the round's counters on ``pipe`` (executed with the pops)."""
        if round_.changed:
            pipe.hset(
                redis_keys.fair_counters(),
                mapping={t: repr(round_.counters[t]) for t in round_.changed},
            )
        if round_.backlogged:
            pipe.set(
                redis_keys.fair_floor(), repr(min(round_.counters[t] for t in round_.backlogged))
            )
        self._previous = set(round_.backlogged)

    def forget_leadership(self) -> None:
        """After losing the lease the next round starts without knowing who was backlogged."""
        self._previous = None


class OutputEstimates:
    """Output tokens an answer of a team's feature on a model is expected to write: the mean of
    those written so far, read from Redis at most once per ``refresh_s``. With fewer than
    :attr:`MIN_ANSWERS` of them, the mean of the model's answers for every team and feature,
    else of every answer: a team or model that just arrived is charged like the others, not
    at its ``max_tokens`` (which would serve it ten times slower than a team charged by its
    answers). Before any answers, ``max_tokens`` is charged. Counts past :attr:`DECAY_AT` are
    halved (sums too), so the mean follows a feature's answers as they change.
    """

    MIN_ANSWERS = 20
    DECAY_AT = 2_000

    def __init__(
        self,
        client: redis.Redis,
        refresh_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = client
        self._refresh_s = refresh_s
        self._clock = clock
        self._read_at: float | None = None
        self._means: dict[tuple[str, str, str], float] = {}
        self._model_means: dict[str, float] = {}
        self._overall: float | None = None

    def refresh(self) -> None:
        now = self._clock()
        if self._read_at is not None and now - self._read_at < self._refresh_s:
            return
        self._read_at = now
        raw = self._redis.hgetall(redis_keys.output_lengths())
        totals: dict[tuple[str, str, str], list[int]] = {}
        for field, value in raw.items():
            try:  # team and feature names have no "|"; a model's may
                team, feature, rest = field.decode().split("|", 2)
                model, part = rest.rsplit("|", 1)
                totals.setdefault((team, feature, model), [0, 0])[part == "n"] = int(value)
            except ValueError:
                continue  # not one of ours: estimates nothing
        self._means = {
            key: written / count
            for key, (written, count) in totals.items()
            if count >= self.MIN_ANSWERS
        }
        by_model: dict[str, list[int]] = {}
        for (_, _, model), (written, count) in totals.items():
            sums = by_model.setdefault(model, [0, 0])
            sums[0] += written
            sums[1] += count
        self._model_means = {
            model: written / count
            for model, (written, count) in by_model.items()
            if count >= self.MIN_ANSWERS
        }
        written, count = (sum(sums[i] for sums in by_model.values()) for i in (0, 1))
        self._overall = written / count if count >= self.MIN_ANSWERS else None
        old = {key: sums for key, sums in totals.items() if sums[1] > self.DECAY_AT}
        if old:
            with self._redis.pipeline(transaction=False) as pipe:
                for (team, feature, model), (written, count) in old.items():
                    _add_output(pipe, team, feature, model, -(written // 2), -(count // 2))
                pipe.execute()

    def output(self, team: str, feature: str, model: str, max_output: int) -> int:
        """The output to charge at dispatch: the mean, rounded up, at most ``max_output``."""
        mean = (
            self._means.get((team, feature, model)) or self._model_means.get(model) or self._overall
        )
        return max_output if mean is None else min(max_output, math.ceil(mean))


def record_output(
    pipe: redis.client.Pipeline, team: str, feature: str, model: str, tokens: int
) -> None:
    """Worker side: an answer of ``team``'s ``feature`` on ``model`` wrote ``tokens``."""
    _add_output(pipe, team, feature, model, tokens, 1)


def _add_output(
    pipe: redis.client.Pipeline, team: str, feature: str, model: str, written: int, answers: int
) -> None:
    """The one place the fields ``team|feature|model|s`` (tokens) and ``…|n`` (answers) of
    :func:`broker.redis_keys.output_lengths` are written (:meth:`OutputEstimates.refresh`
    parses them)."""
    field = f"{team}|{feature}|{model}|"
    pipe.hincrby(redis_keys.output_lengths(), field + "s", written)
    pipe.hincrby(redis_keys.output_lengths(), field + "n", answers)


def record_service(pipe: redis.client.Pipeline, team: str, charged: float, actual: float) -> None:
    """Worker side: correct the charge made at dispatch and count what was received."""
    if actual != charged:
        pipe.hincrbyfloat(redis_keys.fair_corrections(), team, actual - charged)
    if actual:
        pipe.hincrbyfloat(redis_keys.service_received(), team, actual)
