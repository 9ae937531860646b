"""``GET /metrics``: every series read at scrape time, from the live state in Redis and from the
counters the scheduler and workers add to (their names and labels: :mod:`broker.telemetry.metrics`),
and, for the operators' view, what routes did, from the database.

The routed series are counters over every routed request that succeeded, read with
:func:`broker.store.route_stats.route_stats` (what ``GET /v1/reports/routes`` reports, so the two
agree). That reading walks the routed history, so one collector makes it at most every
:data:`ROUTES_READ_EVERY_S` seconds and serves the last one in between: Prometheus scraping
every 15 s costs one read a minute, and a counter a minute late is still a counter.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar
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
from broker.store.route_stats import RouteStats
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

_RTF = ("route", "team", "feature")
#: What routes did, from the database (operators only): name → (family, help, labels).
ROUTED = {
    "routed_requests": (
        _C,
        (
            "Succeeded requests a route decided, by the tier (model) they ended on; cache hits "
            "included."
        ),
        ("route", "model", "team", "feature"),
    ),
    "routed_escalations": (
        _C,
        "Succeeded routed requests a cascade escalated to a higher tier.",
        _RTF,
    ),
    "routed_cost_usd": (
        _C,
        "What succeeded routed requests were charged, turned-down tiers included, USD.",
        _RTF,
    ),
    "routed_flagship_cost_usd": (
        _C,
        (
            "What the same tokens would have cost on each route's last tier (the all-flagship "
            "counterfactual; cache hits count 0), USD."
        ),
        _RTF,
    ),
}
#: How often one collector reads the routed history at most; scrapes in between get the last
#: reading.
ROUTES_READ_EVERY_S = 60.0
#: A team's routed features keep their own label values up to this many; past it, the ones not
#: named in broker.toml are counted under :data:`OTHER_FEATURE`. Features are whatever the
#: submitting jobs say, so without a cap a team could add series without end; the history only
#: grows, so a team crosses the cap once and its labels stay put after (counters stay counters).
ROUTE_FEATURES_PER_TEAM = 50
#: Never a feature's name: features start with a letter or a digit.
OTHER_FEATURE = "(other)"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BudgetReading:
    """One ``[[budgets]]`` entry in its current window."""

    budget: str
    limit_micros: int
    remaining_micros: int


class _AtMostEvery(Generic[T]):
    """``read()``, called again only once ``seconds`` have passed since the last reading; the
    last reading otherwise. A failed read keeps nothing and raises, so a scrape during an
    outage is a 503 and the next one reads again. Safe for concurrent scrapes: one reads, the
    others wait for its result."""

    def __init__(self, read: Callable[[], T], seconds: float) -> None:
        self._read = read
        self._seconds = seconds
        self._lock = threading.Lock()
        self._last: tuple[float, T] | None = None

    def __call__(self) -> T:
        with self._lock:
            if self._last is not None and time.monotonic() - self._last[0] < self._seconds:
                return self._last[1]
            value = self._read()
            self._last = (time.monotonic(), value)
            return value


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
    breakers' script) plus ``budgets()`` and, at most every ``routes_every_s``, ``routes()``.
    Everything is read before anything is yielded, so a Redis failure raises
    ``redis.RedisError`` (a database failure, SQLAlchemy's error) before a line is written.

    With ``team``, only what that team may see (:data:`TEAM_LIVE`, its own rows); ``budgets``
    is then expected to return that team's budgets only. ``routes`` (every team's
    :class:`RouteStats`, all time) feeds the :data:`ROUTED` series of the operators' view; a
    team's view never reads it (``GET /v1/reports/routes`` gives a team its own figures), so a
    team's key cannot make the API walk the routed history at every scrape."""

    def __init__(
        self,
        client: redis.Redis,
        config: BrokerConfig,
        budgets: Callable[[], Sequence[BudgetReading]] | None = None,
        team: str | None = None,
        routes: Callable[[], Sequence[RouteStats]] | None = None,
        routes_every_s: float = ROUTES_READ_EVERY_S,
    ) -> None:
        self._redis = client
        self._config = config
        self._breakers = Breakers(client, config)
        self._budgets = budgets
        self._team = team
        self._routes = (
            _AtMostEvery(routes, routes_every_s) if routes is not None and team is None else None
        )
        self._named_features = named_features(config)  # broker.toml's: fixed for this collector

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
        routed = self._routes() if self._routes is not None else []
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
        routed_rows = _routed_rows(fold_features(routed, self._named_features))
        families += [_family(*ROUTED[name], name, routed_rows[name]) for name in ROUTED]
        return iter(families)


def _usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def named_features(config: BrokerConfig) -> set[str]:
    """Every feature broker.toml names: in a budget, a team's feature limits, a cache policy,
    a route's pins or ``default_for``. These keep their label past the per-team cap."""
    named = {b.feature for b in config.budgets if b.feature}
    named |= {feature for team in config.teams for feature in team.feature_limits}
    named |= {p.feature for p in config.cache.policies if p.feature}
    for route in config.routes:
        named |= {t.feature for t in (*route.pins, *route.default_for) if t.feature}
    return named


def fold_features(
    stats: Sequence[RouteStats], named: set[str], cap: int = ROUTE_FEATURES_PER_TEAM
) -> list[RouteStats]:
    """``stats`` with, for each team routing more than ``cap`` features, every feature not in
    ``named`` merged into one :data:`OTHER_FEATURE` row per route; sorted by (route, team,
    feature)."""
    features: dict[str, set[str]] = {}
    for s in stats:
        features.setdefault(s.team, set()).add(s.feature)
    crowded = {team for team, seen in features.items() if len(seen) > cap}
    out: dict[tuple[str, str, str], RouteStats] = {}
    for s in stats:
        feature = OTHER_FEATURE if s.team in crowded and s.feature not in named else s.feature
        out.setdefault((s.route, s.team, feature), RouteStats(s.route, s.team, feature)).add(s)
    return [out[key] for key in sorted(out)]


def _routed_rows(stats: Sequence[RouteStats]) -> dict[str, list]:
    """(label values, value) rows of each :data:`ROUTED` series."""
    return {
        "routed_requests": [
            ((s.route, model, s.team, s.feature), n)
            for s in stats
            for model, n in s.by_model.items()
        ],
        "routed_escalations": [((s.route, s.team, s.feature), s.escalated) for s in stats],
        "routed_cost_usd": [((s.route, s.team, s.feature), _usd(s.cost_micros)) for s in stats],
        "routed_flagship_cost_usd": [
            ((s.route, s.team, s.feature), _usd(s.flagship_cost_micros)) for s in stats
        ],
    }


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
