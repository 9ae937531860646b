"""What a worker tells the scheduler's shared state when an attempt ends: one Redis round trip
(shared with other attempts' when the worker batches them, :mod:`broker.pipelines`).

It frees the in-flight slot (waking the scheduler), corrects the team's fairness charge with
the service actually received, gives back the unused part of the token estimate, settles the
budget reservation with the actual cost (once per attempt), and passes on what the provider said
about its limits: the remaining-budget headers of a success, or the ``retry-after`` of a 429
(the bucket empties and the scope waits), and a healthy answer to the circuit breakers. Budget
thresholds crossed by the settlement alert. An attempt handed back (a 429, an open breaker, a
failure sent down the chain) is not served: its fairness charge and budget reservation are taken
back, and the next dispatch reserves again at its model's price.
"""

from __future__ import annotations

import redis

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.pipelines import Pipelines
from broker.telemetry import metrics
from schedulers.alerts import Alerts
from schedulers.budgets import Budgets
from schedulers.capacity import release
from schedulers.fairness import ServiceMeter, record_output, record_service
from schedulers.ratelimits import RateLimits
from schedulers.ticket import Ticket
from workers.breakers import Breakers
from workers.providers.base import RateSignal


class Feedback:
    def __init__(
        self,
        client: redis.Redis,
        config: BrokerConfig,
        budgets: Budgets | None = None,
        breakers: Breakers | None = None,
        pipelines: Pipelines | None = None,
    ) -> None:
        self._pipelines = pipelines or Pipelines(client)
        self._breakers = breakers
        self._limits = RateLimits(client, config)
        self._meter = ServiceMeter(config)
        self._budgets = budgets if budgets is not None and budgets.enabled else None
        self._alerts = Alerts(client, config)

    def finished(
        self,
        ticket: Ticket,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cost_micros: int = 0,
        recorded: bool = True,
        signal: RateSignal | None = None,
        healthy: bool = False,
        succeeded: bool = True,
        latency_ms: int | None = None,
    ) -> None:
        """The attempt ended (succeeded or failed) after calling the provider; ``healthy``: its
        last call showed the provider working.

        ``recorded``: the database took this attempt's outcome (and its ledger row). If it did
        not (another copy of the task recorded it first), there is nothing to settle.
        ``succeeded`` and ``latency_ms`` (with the usage) go to the ``/metrics`` counters, once
        per recorded attempt.
        """
        actual = self._meter.service(ticket.model, input_tokens, output_tokens)
        unused = ticket.queue_entry.est_tokens - input_tokens - output_tokens
        entry = ticket.queue_entry
        scopes = []
        if self._budgets is not None and recorded:
            scopes = self._budgets.scopes(ticket.team, entry.feature, entry.trace)

        def fill(pipe: redis.client.Pipeline) -> None:
            release(pipe, ticket.provider, ticket.request_id)
            record_service(pipe, ticket.team, ticket.service, actual)
            self._limits.refund_tokens(pipe, ticket.provider, ticket.model, unused)
            if signal is not None:
                self._limits.observe(pipe, ticket.provider, ticket.model, signal)
            self._healthy(pipe, ticket, healthy)
            if recorded:  # wakes an API call waiting for it (an SDK call), in this round trip
                pipe.publish(redis_keys.request_ended(ticket.request_id), b"")
                if succeeded:
                    record_output(pipe, ticket.team, entry.feature, ticket.model, output_tokens)
                metrics.count_finished(
                    pipe,
                    ticket.provider,
                    ticket.model,
                    succeeded=succeeded,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cost_micros=cost_micros,
                    latency_ms=latency_ms,
                )
            if scopes:  # last: the replies of its HGETs are read from the end
                self._budgets.settle(pipe, ticket.request_id, ticket.attempt, cost_micros, scopes)
                for scope in scopes:
                    pipe.hget(scope.key, "spent")

        replies = self._pipelines.run(fill)
        if scopes and cost_micros:
            for scope, spent in zip(scopes, replies[-len(scopes) :]):
                self._alerts.budget_level(scope, int(spent or 0))

    def handed_back(
        self,
        ticket: Ticket,
        *,
        rate_limited: bool = False,
        retry_after_s: float | None = None,
        healthy: bool = False,
    ) -> None:
        """The request went back to its queue: its charge and reservation are taken back; a 429
        holds the provider (or model) back for its ``retry-after``."""

        def fill(pipe: redis.client.Pipeline) -> None:
            release(pipe, ticket.provider, ticket.request_id)
            record_service(pipe, ticket.team, ticket.service, 0.0)
            if rate_limited:
                self._limits.back_off(pipe, ticket.provider, ticket.model, retry_after_s)
            self._healthy(pipe, ticket, healthy)
            if self._budgets is not None:
                self._budgets.release(pipe, ticket.request_id)

        self._pipelines.run(fill)

    def _healthy(self, pipe: redis.client.Pipeline, ticket: Ticket, healthy: bool) -> None:
        if healthy and self._breakers is not None:
            self._breakers.record(ticket.provider, ticket.model, "success", pipe=pipe)

    def release(self, ticket: Ticket) -> None:
        """Only free the slot: the attempt never ran (stale, cancelled) or was not recorded."""
        self._pipelines.run(lambda pipe: release(pipe, ticket.provider, ticket.request_id))
