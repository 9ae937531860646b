"""``GET /metrics``: every series read at scrape time, from the live state in Redis and from the
counters the scheduler and workers add to (their names and labels: :mod:`broker.telemetry.metrics`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import redis
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.money import MICROS_PER_USD
from broker.states import PRIORITY_ORDER
from broker.telemetry.metrics import (
    COUNTERS,
    LATENCY_BUCKETS_MS,
    LATENCY_KEY,
    LATENCY_NAME,
    PREFIX,
    CounterSeries,
)
from workers.breakers import Breakers

BREAKER_LEVELS = {"closed": 0, "half_open": 1, "open": 2}

_G, _C = GaugeMetricFamily, CounterMetricFamily

#: The series read from the live state at scrape time: name → (family, help, labels).
LIVE = {
    "queue_depth": (_G, "Requests queued, per team and priority.", ("team", "priority")),
    "parked": (_G, "Queued requests set aside behind open circuit breakers.", ("team",)),
    "in_flight": (_G, "Requests in a provider's pool, not finished.", ("provider",)),
    "breaker_state": (_G, "Circuit breaker: 0 closed, 1 half-open, 2 open.", ("scope",)),
    "breaker_transitions": (_C, "Circuit breaker transitions.", ("scope",)),
    "budget_remaining_usd": (_G, "Budget left (limit - spent - reserved), USD.", ("budget",)),
    "budget_limit_usd": (_G, "Budget limit in its current window, USD.", ("budget",)),
}
#: What a team's key scrapes: its own rows of the per-team series, and the breakers (the
#: providers' health, nobody's traffic). In flight and the per provider and model counters add
#: up every team's traffic, so only the operators' keys see them.
TEAM_LIVE = ("queue_depth", "parked", "breaker_state", "breaker_transitions") + (
    "budget_remaining_usd",
    "budget_limit_usd",
)


@dataclass(frozen=True, slots=True)
class BudgetReading:
    """One ``[[budgets]]`` entry in its current window."""

    budget: str
    limit_micros: int
    remaining_micros: int


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _labels(field: str, names: Sequence[str]) -> list[str] | None:
    """The values of ``names`` in a hash field, or None unless it names exactly those labels."""
    pairs = [part.partition("=") for part in field.split(",")]
    if [name for name, _, _ in pairs] != list(names):
        return None
    return [unquote(value) for _, _, value in pairs]


class BrokerCollector(Collector):
    """Reads every series at scrape time: a few Redis round trips (two pipelines and the
    breakers' script) plus ``budgets()``. Everything is read before anything is yielded, so a
    Redis failure raises ``redis.RedisError`` before a line is written.

    With ``team``, only what that team may see (:data:`TEAM_LIVE`, its own rows); ``budgets``
    is then expected to return that team's budgets only."""

    def __init__(
        self,
        client: redis.Redis,
        config: BrokerConfig,
        budgets: Callable[[], Sequence[BudgetReading]] | None = None,
        team: str | None = None,
    ) -> None:
        self._redis = client
        self._config = config
        self._breakers = Breakers(client, config)
        self._budgets = budgets
        self._team = team

    def collect(self) -> Iterator[Metric]:
        providers = [p.name for p in self._config.providers]
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.smembers(redis_keys.backlogged_teams())
            pipe.smembers(redis_keys.parked_teams())
            for provider in providers:
                pipe.zcard(redis_keys.in_flight(provider))
            for series in COUNTERS:
                pipe.hgetall(redis_keys.metrics_counter(series.key))
            pipe.hgetall(redis_keys.metrics_histogram(LATENCY_KEY))
            backlogged, parked_teams, *replies = pipe.execute()
        in_flight, counters = replies[: len(providers)], replies[len(providers) : -1]
        seen = {_text(t) for t in backlogged} | {_text(t) for t in parked_teams}
        teams = sorted({t.id for t in self._config.teams} | seen)
        if self._team is not None:
            teams = [self._team]
        with self._redis.pipeline(transaction=False) as pipe:
            for team in teams:
                for priority in PRIORITY_ORDER:
                    pipe.llen(redis_keys.team_queue(team, priority))
                pipe.llen(redis_keys.parked(team))
            lengths = iter(pipe.execute())
        depths, parked = [], []
        for team in teams:
            depths += [((team, p.value), next(lengths)) for p in PRIORITY_ORDER]
            parked.append(((team,), next(lengths)))
        breakers = self._breakers.states()
        budgets = self._budgets() if self._budgets is not None else []
        rows = {
            "queue_depth": depths,
            "parked": parked,
            "in_flight": [((p,), n) for p, n in zip(providers, in_flight)],
            "breaker_state": [((b.scope,), BREAKER_LEVELS[b.state]) for b in breakers],
            "breaker_transitions": [((b.scope,), b.transitions) for b in breakers],
            "budget_remaining_usd": [((b.budget,), _usd(b.remaining_micros)) for b in budgets],
            "budget_limit_usd": [((b.budget,), _usd(b.limit_micros)) for b in budgets],
        }
        if self._team is not None:
            return iter([_family(*LIVE[name], name, rows[name]) for name in TEAM_LIVE])
        families = [_family(*LIVE[name], name, rows[name]) for name in LIVE]
        families += [_counter(series, raw) for series, raw in zip(COUNTERS, counters)]
        families.append(_latency(replies[-1]))
        return iter(families)


def _usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def _family(cls, doc: str, labels: Sequence[str], name: str, rows: Iterable) -> Metric:
    """A gauge or counter family ``inference_broker_<name>`` from (label values, value) rows."""
    family = cls(PREFIX + name, doc, labels=list(labels))
    for values, value in rows:
        family.add_metric(list(values), value)
    return family


def _counter(series: CounterSeries, raw: dict) -> Metric:
    rows = []
    for field, value in sorted((_text(f), int(v)) for f, v in raw.items()):
        labels = _labels(field, series.labels)
        if labels is not None:
            rows.append((labels, value / series.per_unit))
    return _family(_C, series.doc, series.labels, series.name, rows)


def _latency(raw: dict) -> Metric:
    """Per-bucket counts → cumulative buckets; the count is the +Inf bucket (so the two always
    agree, whatever a concurrent writer had done when the hash was read)."""
    per: dict[str, list[int]] = {}  # provider → bucket counts (last: +Inf), then the sum in ms
    for field, value in ((_text(f), int(v)) for f, v in raw.items()):
        series, _, stat = field.partition(";")
        labels = _labels(series, ("provider",))
        if labels is None:
            continue
        slots = per.setdefault(labels[0], [0] * (len(LATENCY_BUCKETS_MS) + 2))
        if stat == "sum_ms":
            slots[-1] += value
        elif stat.startswith("le="):
            bound = stat[3:]
            ms = float("inf") if bound == "+Inf" else float(bound)
            # A bound no longer listed falls into the next one up, which holds all it counted.
            slots[bisect_left(LATENCY_BUCKETS_MS, ms)] += value
    family = HistogramMetricFamily(
        LATENCY_NAME,
        "Time a finished attempt took, from its first provider call to its outcome (retries "
        "included), per provider.",
        labels=["provider"],
    )
    for provider in sorted(per):
        slots, total, buckets = per[provider], 0, []
        for i, bound in enumerate((*LATENCY_BUCKETS_MS, None)):
            total += slots[i]
            buckets.append(("+Inf" if bound is None else floatToGoString(bound / 1000), total))
        family.add_metric([provider], buckets, slots[-1] / 1000)
    return family
