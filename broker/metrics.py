"""Prometheus series for the whole system, kept in Redis: the one thing every process shares.

The work happens in the scheduler and the worker pools, possibly on other machines, and the API
serves ``GET /metrics`` (:mod:`broker.api.metrics`). So counters and the latency histogram are
added to in Redis by the processes that do the work, on pipelines they already send (no extra
round trip): :func:`count_dispatches` in the scheduler's :func:`schedulers.dispatch.hold`, and
:func:`count_finished` in :meth:`schedulers.feedback.Feedback.finished`, only by the copy of a
task whose outcome the database took (a redelivered task does not count twice); and
:func:`count_webhook_attempt` in the webhooks worker, one HINCRBY per delivery attempt it made.
Gauges are read from the live state when Prometheus scrapes. :class:`BrokerCollector` reads both.

Series, all named ``inference_broker_<name>``:

- gauges ``queue_depth{team,priority}`` (LLEN of the team queues), ``parked{team}``
  (requests set aside while every model of their chain is behind an open breaker),
  ``in_flight{provider}``
  (ZCARD of the in-flight set), ``breaker_state{scope}`` (0 closed, 1 half-open, 2 open),
  ``budget_remaining_usd{budget}`` and ``budget_limit_usd{budget}`` (every ``[[budgets]]``
  entry in its current window);
- counters ``breaker_transitions_total{scope}`` (the breaker's own count, reset when it has
  been idle long enough to expire), ``dispatches_total{provider,model}``,
  ``requests_total{provider,model,outcome}`` (``succeeded`` / ``failed``; an attempt handed
  back to its queue is not finished), ``tokens_total{provider,model,kind}`` (``input``, cached
  input included, / ``output``), ``cost_usd_total{provider,model}``,
  ``webhook_deliveries_total{outcome}`` (per attempt: ``delivered`` when a 2xx ends the
  delivery, ``retried`` when another attempt is scheduled, ``failed`` when it is given up);
- histogram ``request_latency_seconds{provider}``.

Label values are only ever provider and model names, team ids, priorities, breaker scopes,
budget ids and the fixed words above: the collector reads back only the labels each series
declares, so nothing else a Redis field might hold reaches the output. Provider API keys never
reach this module. Counters lost with Redis start again from 0 (Prometheus sees a reset).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
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

from broker import keys
from broker.config import BrokerConfig
from broker.money import MICROS_PER_USD
from broker.states import PRIORITY_ORDER
from workers.breakers import Breakers

PREFIX = "inference_broker_"


@dataclass(frozen=True, slots=True)
class CounterSeries:
    key: str  # its hash in Redis: keys.metrics_counter(key)
    name: str  # the family: inference_broker_<name>_total
    doc: str
    labels: tuple[str, ...]
    per_unit: int = 1  # stored integer per exposed unit (micro-dollars per USD)


_PM = ("provider", "model")
DISPATCHES = CounterSeries("dispatches", "dispatches", "Requests handed to a provider's pool.", _PM)
REQUESTS = CounterSeries(
    "requests", "requests", "Attempts finished after calling a provider.", (*_PM, "outcome")
)
TOKENS = CounterSeries("tokens", "tokens", "Tokens of finished attempts.", (*_PM, "kind"))
COST = CounterSeries(
    "cost_micros", "cost_usd", "Cost of finished attempts, USD.", _PM, MICROS_PER_USD
)
WEBHOOK_DELIVERIES = CounterSeries(
    "webhook_deliveries",
    "webhook_deliveries",
    "Webhook delivery attempts by result: delivered (a 2xx ended the delivery), retried "
    "(another attempt is scheduled) or failed (the delivery was given up).",
    ("outcome",),
)
COUNTERS = (DISPATCHES, REQUESTS, TOKENS, COST, WEBHOOK_DELIVERIES)
#: A delivery's status after an attempt → that attempt's outcome in ``webhook_deliveries``.
WEBHOOK_OUTCOMES = {"delivered": "delivered", "pending": "retried", "failed": "failed"}

LATENCY_KEY = "request_latency"
LATENCY_NAME = PREFIX + "request_latency_seconds"
#: Upper bounds of the latency buckets, in milliseconds (then +Inf).
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

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


# -- recording (scheduler and workers) ---------------------------------------------------------


def _quote(value: str) -> str:
    return value.replace("%", "%25").replace(",", "%2C").replace(";", "%3B").replace("=", "%3D")


def labels_field(names: Sequence[str], values: Sequence[str]) -> str:
    """``provider=sim-openai,model=gpt-4o``: a hash field naming one series."""
    return ",".join(f"{n}={_quote(v)}" for n, v in zip(names, values, strict=True))


def count_dispatches(pipe: redis.client.Pipeline, picks: Iterable[tuple[str, str]]) -> None:
    """Queue on ``pipe`` one HINCRBY per (provider, model) among a round's dispatches."""
    key = keys.metrics_counter(DISPATCHES.key)
    for pair, n in Counter(picks).items():
        pipe.hincrby(key, labels_field(DISPATCHES.labels, pair), n)


def count_finished(
    pipe: redis.client.Pipeline,
    provider: str,
    model: str,
    *,
    succeeded: bool,
    input_tokens: int,
    output_tokens: int,
    cost_micros: int,
    latency_ms: int | None,
) -> None:
    """Queue on ``pipe`` what one finished attempt adds: its outcome, tokens, cost and (when
    known) its latency."""
    pm = labels_field(_PM, (provider, model))  # the fields below follow each series' labels
    outcome = "succeeded" if succeeded else "failed"
    pipe.hincrby(keys.metrics_counter(REQUESTS.key), f"{pm},outcome={outcome}", 1)
    tokens = keys.metrics_counter(TOKENS.key)
    pipe.hincrby(tokens, f"{pm},kind=input", input_tokens)
    pipe.hincrby(tokens, f"{pm},kind=output", output_tokens)
    pipe.hincrby(keys.metrics_counter(COST.key), pm, cost_micros)
    if latency_ms is not None:
        latency_ms = max(0, latency_ms)
        series = labels_field(("provider",), (provider,))
        i = bisect_left(LATENCY_BUCKETS_MS, latency_ms)
        bound = str(LATENCY_BUCKETS_MS[i]) if i < len(LATENCY_BUCKETS_MS) else "+Inf"
        histogram = keys.metrics_histogram(LATENCY_KEY)
        pipe.hincrby(histogram, f"{series};le={bound}", 1)
        pipe.hincrby(histogram, f"{series};sum_ms", latency_ms)


def count_webhook_attempt(client: redis.Redis, status: str) -> None:
    """One HINCRBY for a webhook delivery attempt, by the delivery's ``status`` after it
    (``delivered``, ``pending``: retried, or ``failed``). Raises ``redis.RedisError``: the
    caller decides whether a lost count matters."""
    outcome = WEBHOOK_OUTCOMES[status]
    field = labels_field(WEBHOOK_DELIVERIES.labels, (outcome,))
    client.hincrby(keys.metrics_counter(WEBHOOK_DELIVERIES.key), field, 1)


# -- reading (the API, at scrape time) ---------------------------------------------------------


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
            pipe.smembers(keys.backlogged_teams())
            pipe.smembers(keys.parked_teams())
            for provider in providers:
                pipe.zcard(keys.in_flight(provider))
            for series in COUNTERS:
                pipe.hgetall(keys.metrics_counter(series.key))
            pipe.hgetall(keys.metrics_histogram(LATENCY_KEY))
            backlogged, parked_teams, *replies = pipe.execute()
        in_flight, counters = replies[: len(providers)], replies[len(providers) : -1]
        seen = {_text(t) for t in backlogged} | {_text(t) for t in parked_teams}
        teams = sorted({t.id for t in self._config.teams} | seen)
        if self._team is not None:
            teams = [self._team]
        with self._redis.pipeline(transaction=False) as pipe:
            for team in teams:
                for priority in PRIORITY_ORDER:
                    pipe.llen(keys.team_queue(team, priority))
                pipe.llen(keys.parked(team))
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
