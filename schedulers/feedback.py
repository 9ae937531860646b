"""What a worker tells the scheduler's shared state when an attempt ends: one Redis round trip.

It frees the in-flight slot (waking the scheduler), corrects the team's fairness charge with
the service actually received, gives back the unused part of the token estimate, and passes on
what the provider said about its limits: the remaining-budget headers of a success, or the
``retry-after`` of a 429 (the bucket empties and the scope waits).
"""

from __future__ import annotations

import redis

from broker.config import BrokerConfig
from schedulers.capacity import release
from schedulers.fairness import ServiceMeter, record_service
from schedulers.ratelimits import RateLimits
from schedulers.ticket import Ticket
from workers.providers.base import RateSignal


class Feedback:
    def __init__(self, client: redis.Redis, config: BrokerConfig) -> None:
        self._redis = client
        self._limits = RateLimits(client, config)
        self._meter = ServiceMeter(config)

    def finished(
        self,
        ticket: Ticket,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        signal: RateSignal | None = None,
    ) -> None:
        """The attempt ended (succeeded or failed) after calling the provider."""
        actual = self._meter.service(ticket.model, input_tokens, output_tokens)
        unused = ticket.queue_entry.est_tokens - input_tokens - output_tokens
        with self._redis.pipeline(transaction=False) as pipe:
            release(pipe, ticket.provider, ticket.request_id)
            record_service(pipe, ticket.team, ticket.service, actual)
            self._limits.refund_tokens(pipe, ticket.provider, ticket.model, unused)
            if signal is not None:
                self._limits.observe(pipe, ticket.provider, ticket.model, signal)
            pipe.execute()

    def rate_limited(self, ticket: Ticket, retry_after_s: float | None) -> None:
        """A 429: the request goes back to its queue, so its charge is taken back."""
        with self._redis.pipeline(transaction=False) as pipe:
            release(pipe, ticket.provider, ticket.request_id)
            record_service(pipe, ticket.team, ticket.service, 0.0)
            self._limits.back_off(pipe, ticket.provider, ticket.model, retry_after_s)
            pipe.execute()

    def release(self, ticket: Ticket) -> None:
        """Only free the slot: the attempt never ran (stale, cancelled) or was not recorded."""
        with self._redis.pipeline(transaction=False) as pipe:
            release(pipe, ticket.provider, ticket.request_id)
            pipe.execute()
