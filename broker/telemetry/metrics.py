"""Prometheus series for the whole system, kept in Redis: the one thing every process shares.

The work happens in the scheduler and the worker pools, possibly on other machines, and the API
serves ``GET /metrics`` (:mod:`broker.api.metrics`). So counters and the latency histogram are
added to in Redis by the processes that do the work, on pipelines they already send (no extra
round trip): :func:`count_dispatches` in the scheduler's :func:`schedulers.dispatch.hold`, and
:func:`count_finished` in :meth:`schedulers.feedback.Feedback.finished`, only by the copy of a
task whose outcome the database took (a redelivered task does not count twice); and
:func:`count_webhook_attempt` in the webhooks worker, one HINCRBY per delivery attempt it made.
Gauges are read from the live state when Prometheus scrapes. :class:`broker.api.collector.BrokerCollector` reads both.

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
- counters ``cache_hits_total{kind,model}`` (requests answered from the response cache: kind
  ``exact``, ``semantic`` or ``single_flight``; model the one whose answer was reused) and
  ``cost_avoided_usd_total{model}``, added by whoever recorded the hits (:func:`count_hits`);
- histogram ``request_latency_seconds{provider}``;
- counters of what routes did, not kept here: the collector reads them from the database
  (:data:`broker.api.collector.ROUTED`, the operators' view only):
  ``routed_requests_total{route,model,team,feature}`` (succeeded routed requests by the tier
  they ended on), ``routed_escalations_total{route,team,feature}``,
  ``routed_cost_usd_total{route,team,feature}`` and
  ``routed_flagship_cost_usd_total{route,team,feature}`` (the all-flagship counterfactual).

Label values are only ever provider and model names, team ids, priorities, breaker scopes,
budget ids, route names, features (past :data:`~broker.api.collector.ROUTE_FEATURES_PER_TEAM`
in a team, those broker.toml does not name count as ``(other)``) and the fixed words above:
the collector reads back only the labels each series declares, so nothing else a Redis field
might hold reaches the output. Provider API keys never reach this module. Counters lost with
Redis start again from 0 (Prometheus sees a reset).
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import redis

from broker import redis_keys
from broker.money import MICROS_PER_USD

log = logging.getLogger(__name__)

PREFIX = "inference_broker_"


@dataclass(frozen=True, slots=True)
class CounterSeries:
    key: str  # its hash in Redis: redis_keys.metrics_counter(key)
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
CACHE_HITS = CounterSeries(
    "cache_hits",
    "cache_hits",
    "Requests answered from the response cache (exact, semantic, single_flight), charged 0.",
    ("kind", "model"),
)
COST_AVOIDED = CounterSeries(
    "cost_avoided_micros",
    "cost_avoided_usd",
    "What the answers cache hits reused had cost, USD.",
    ("model",),
    MICROS_PER_USD,
)
COUNTERS = (DISPATCHES, REQUESTS, TOKENS, COST, WEBHOOK_DELIVERIES, CACHE_HITS, COST_AVOIDED)
#: A delivery's status after an attempt → that attempt's outcome in ``webhook_deliveries``.
WEBHOOK_OUTCOMES = {"delivered": "delivered", "pending": "retried", "failed": "failed"}

LATENCY_KEY = "request_latency"
LATENCY_NAME = PREFIX + "request_latency_seconds"
#: Upper bounds of the latency buckets, in milliseconds (then +Inf).
LATENCY_BUCKETS_MS = (50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)

# -- recording (scheduler and workers) ---------------------------------------------------------


def _quote(value: str) -> str:
    return value.replace("%", "%25").replace(",", "%2C").replace(";", "%3B").replace("=", "%3D")


def labels_field(names: Sequence[str], values: Sequence[str]) -> str:
    """``provider=sim-openai,model=gpt-4o``: a hash field naming one series."""
    return ",".join(f"{n}={_quote(v)}" for n, v in zip(names, values, strict=True))


def count_dispatches(pipe: redis.client.Pipeline, picks: Iterable[tuple[str, str]]) -> None:
    """Queue on ``pipe`` one HINCRBY per (provider, model) among a round's dispatches."""
    key = redis_keys.metrics_counter(DISPATCHES.key)
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
    pipe.hincrby(redis_keys.metrics_counter(REQUESTS.key), f"{pm},outcome={outcome}", 1)
    tokens = redis_keys.metrics_counter(TOKENS.key)
    pipe.hincrby(tokens, f"{pm},kind=input", input_tokens)
    pipe.hincrby(tokens, f"{pm},kind=output", output_tokens)
    pipe.hincrby(redis_keys.metrics_counter(COST.key), pm, cost_micros)
    if latency_ms is not None:
        latency_ms = max(0, latency_ms)
        series = labels_field(("provider",), (provider,))
        i = bisect_left(LATENCY_BUCKETS_MS, latency_ms)
        bound = str(LATENCY_BUCKETS_MS[i]) if i < len(LATENCY_BUCKETS_MS) else "+Inf"
        histogram = redis_keys.metrics_histogram(LATENCY_KEY)
        pipe.hincrby(histogram, f"{series};le={bound}", 1)
        pipe.hincrby(histogram, f"{series};sum_ms", latency_ms)


def count_hits(client: redis.Redis, hits: Iterable[tuple[str, str, int]]) -> None:
    """Count recorded cache hits, each (kind, model, cost avoided in micro-dollars), in one
    pipeline. A lost count is logged by nobody: the ledger is the record of hits."""
    hits = list(hits)
    if not hits:
        return
    try:
        with client.pipeline(transaction=False) as pipe:
            for (kind, model), n in Counter((k, m) for k, m, _ in hits).items():
                field = labels_field(CACHE_HITS.labels, (kind, model))
                pipe.hincrby(redis_keys.metrics_counter(CACHE_HITS.key), field, n)
            avoided = redis_keys.metrics_counter(COST_AVOIDED.key)
            for _, model, micros in hits:
                pipe.hincrby(avoided, labels_field(COST_AVOIDED.labels, (model,)), micros)
            pipe.execute()
    except redis.RedisError as exc:
        log.debug("cache hit counters not written: %s", exc)


def count_webhook_attempt(client: redis.Redis, status: str) -> None:
    """One HINCRBY for a webhook delivery attempt, by the delivery's ``status`` after it
    (``delivered``, ``pending``: retried, or ``failed``). Raises ``redis.RedisError``: the
    caller decides whether a lost count matters."""
    outcome = WEBHOOK_OUTCOMES[status]
    field = labels_field(WEBHOOK_DELIVERIES.labels, (outcome,))
    client.hincrby(redis_keys.metrics_counter(WEBHOOK_DELIVERIES.key), field, 1)
