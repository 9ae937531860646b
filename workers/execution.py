"""Running one attempt: claim it, call the provider, record the outcome, report back.

Nothing a provider sends back may kill the worker: every failure becomes a recorded outcome
with a reason a person can act on. A stale or redelivered attempt is claimed by nobody and
does nothing. A 429 is not a failure of the request: it goes back to the head of its queue
(keeping its age) and the provider's buckets back off, so rate limiting never fails a request.
"""

from __future__ import annotations

import logging
import os
import threading
import time

import redis

from broker import queues
from broker.config import BrokerConfig, ProviderConfig
from broker.errors import ProviderError, ProviderRateLimited
from broker.store.transitions import Outcome
from schedulers.budgets import Budgets
from schedulers.feedback import Feedback
from schedulers.ticket import Ticket
from workers.providers import Completion, ProviderClient, cache_savings, completion_cost
from workers.recorder import Recorder

log = logging.getLogger(__name__)


class Executor:
    """Per-process resources for running attempts; safe to share across pool threads."""

    def __init__(
        self,
        config: BrokerConfig,
        recorder: Recorder,
        client: redis.Redis,
        budgets: Budgets | None = None,
    ) -> None:
        self._config = config
        self._recorder = recorder
        self._redis = client
        self._feedback = Feedback(client, config, budgets)
        self._clients: dict[str, ProviderClient] = {}
        self._lock = threading.Lock()

    def _client_for(self, provider: ProviderConfig) -> ProviderClient:
        with self._lock:
            client = self._clients.get(provider.name)
            if client is None:
                key = os.environ.get(provider.api_key_env) if provider.api_key_env else None
                client = self._clients[provider.name] = ProviderClient(provider, key)
            return client

    def run(self, ticket: Ticket) -> None:
        claimed = self._recorder.claim(ticket.request_id, ticket.attempt)
        if claimed is None:
            log.info("attempt %s/%d is stale or cancelled; skipped", *_attempt(ticket))
            self._feedback.release(ticket)
            return
        reported = False
        try:
            started = time.monotonic()
            try:
                completion = self._client_for(self._config.provider(ticket.provider)).complete(
                    self._config.model(ticket.model), claimed.payload
                )
            except ProviderRateLimited as exc:
                if self._recorder.requeue(claimed):
                    queues.push_front(
                        self._redis, claimed.team_id, ticket.priority_level, [ticket.queue_entry]
                    )
                    log.info("request %s rate limited on %s; queued again", *_where(ticket))
                self._feedback.rate_limited(ticket, exc.retry_after)
                reported = True
                return
            except ProviderError as exc:
                log.info("request %s failed on %s: %s", *_where(ticket), exc.code)
                outcome = self._outcome(ticket, started, error_code=exc.code, error=str(exc))
                completion = None
            except Exception as exc:  # a bug must fail this request, never the worker
                log.exception("request %s: unexpected error", ticket.request_id)
                outcome = self._outcome(
                    ticket,
                    started,
                    error_code="internal_error",
                    error=f"internal error: {type(exc).__name__}",
                )
                completion = None
            else:
                outcome = self._succeeded(ticket, started, completion)
            recorded = self._recorder.finish(claimed, outcome)
            if not recorded:
                log.warning("attempt %s/%d was already finished", *_attempt(ticket))
            self._feedback.finished(
                ticket,
                input_tokens=outcome.input_tokens + outcome.cached_input_tokens,
                output_tokens=outcome.output_tokens,
                cost_micros=outcome.cost_micros,
                recorded=recorded,
                signal=completion.rate if completion is not None else None,
            )
            reported = True
        finally:
            if not reported:  # recording failed: at least give the slot back
                self._feedback.release(ticket)

    def _outcome(self, ticket: Ticket, started: float, **fields) -> Outcome:
        latency_ms = int((time.monotonic() - started) * 1000)
        return Outcome(
            model=ticket.model, provider=ticket.provider, latency_ms=latency_ms, **fields
        )

    def _succeeded(self, ticket: Ticket, started: float, completion: Completion) -> Outcome:
        model = self._config.model(ticket.model)
        return self._outcome(
            ticket,
            started,
            output=completion.text,
            finish_reason=completion.finish_reason,
            input_tokens=completion.input_tokens,
            cached_input_tokens=completion.cached_input_tokens,
            output_tokens=completion.output_tokens,
            cost_micros=completion_cost(completion, model),
            cache_savings_micros=cache_savings(completion, model),
        )

    def close(self) -> None:
        for client in self._clients.values():
            client.close()


def _attempt(ticket: Ticket) -> tuple[str, int]:
    return ticket.request_id, ticket.attempt


def _where(ticket: Ticket) -> tuple[str, str]:
    return ticket.request_id, ticket.provider
