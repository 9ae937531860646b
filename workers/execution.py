"""Running one attempt: claim it, call the provider, then finish the request or hand it back.

Nothing a provider sends back may kill the worker: every failure becomes a recorded outcome
with a reason a person can act on. A stale or redelivered attempt is claimed by nobody and
does nothing, so it neither calls the provider nor charges again.

What an attempt produced decides what comes next (:mod:`workers.fallback`): a completion or a
final failure finishes the request; a 429, an open breaker or a failure with somewhere left to
go hands it back, at the head of its team's queue (keeping its age), with its place in its
model's chain, for the scheduler to dispatch again under fresh budgets and limits. Every call
made on the way is recorded with the attempt.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import redis

from broker import queues
from broker.config.broker_toml import BrokerConfig, ProviderConfig
from broker.config.routes import CascadeConfig
from broker.deltas import DeltaWriter
from broker.errors import ProviderRateLimited
from broker.pipelines import Pipelines
from broker.store.cascades import Escalation
from broker.store.transitions import Call, Claimed, HandBack, Outcome
from broker.telemetry import logs
from schedulers.budgets import Budgets
from schedulers.feedback import Feedback
from schedulers.ticket import Ticket
from workers import cascade, judge
from workers.answers import AnswerSharing
from workers.attempts import AttemptResult, Attempts
from workers.breakers import Breakers
from workers.fallback import Fail, after_error
from workers.providers import ProviderClient, cache_savings
from workers.recorder import Recorder
from workers.validators import Verdict

log = logging.getLogger(__name__)


class Executor:
    """Per-process resources for running attempts; safe to share across pool threads."""

    def __init__(
        self,
        config: BrokerConfig,
        recorder: Recorder,
        client: redis.Redis,
        budgets: Budgets | None = None,
        sharing: AnswerSharing | None = None,
        calls_in_flight: int = 64,
        pipelines: Pipelines | None = None,
    ) -> None:
        self._config = config
        self._sharing = sharing
        self._recorder = recorder
        self._redis = client
        breakers = Breakers(client, config, pipelines)
        self._attempts = Attempts(config, breakers)
        self._feedback = Feedback(client, config, budgets, breakers, pipelines)
        self._clients: dict[str, ProviderClient] = {}
        self._lock = threading.Lock()
        # The attempts of a several-ticket message run side by side on these threads.
        self._calls = ThreadPoolExecutor(calls_in_flight, thread_name_prefix="attempt")

    def _client_for(self, provider: ProviderConfig) -> ProviderClient:
        with self._lock:
            client = self._clients.get(provider.name)
            if client is None:
                key = os.environ.get(provider.api_key_env) if provider.api_key_env else None
                client = self._clients[provider.name] = ProviderClient(provider, key)
            return client

    def run_many(self, tickets: Sequence[Ticket]) -> None:
        """Run a message's attempts side by side and return when every one has ended (so the
        message is acknowledged only then). Each is independent: one that raises does not stop
        the others; the first error is raised at the end, for Celery to log."""
        first, *rest = tickets
        others = [self._calls.submit(self.run, ticket) for ticket in rest]
        try:
            self.run(first)
        finally:
            wait(others)
        for future in others:
            future.result()

    def run(self, ticket: Ticket) -> None:
        """Run the attempt, every log line in it carrying its ids (:func:`broker.telemetry.logs.bind`)."""
        with logs.bind(
            request_id=ticket.request_id,
            attempt=ticket.attempt,
            provider=ticket.provider,
            model=ticket.model,
            team=ticket.team,
        ):
            claimed = self._recorder.claim(ticket.request_id, ticket.attempt)
            if claimed is None:
                log.info("attempt %s/%d is stale or cancelled; skipped", *_attempt(ticket))
                self._feedback.release(ticket)
                return
            with logs.bind(job_id=claimed.job_id, team=claimed.team_id):
                if ticket.queue_entry.model != claimed.model:
                    self._moved_on(ticket, claimed)
                else:
                    self._run(ticket, claimed)

    def _moved_on(self, ticket: Ticket, claimed: Claimed) -> None:
        """The ticket came from a stale queue line: the request has moved to another model
        since (a cascade escalated it, and the line for its old tier outlived the escalation).
        Nothing is called; it goes back to its queue on the model the database names."""
        log.info(
            "request %s is on %s now, not %s: queued again", ticket.request_id, claimed.model,
            ticket.queue_entry.model,
        )  # fmt: skip
        try:
            if self._recorder.hand_back(claimed, HandBack(chain_index=0, failed=False)):
                entry = dataclasses.replace(
                    ticket.queue_entry, model=claimed.model, chain_index=0, cache="-"
                )
                queues.push_front(self._redis, claimed.team_id, ticket.priority_level, [entry])
        finally:  # no call was made: slot, fairness charge and reservation all go back
            self._feedback.handed_back(ticket)

    def _run(self, ticket: Ticket, claimed: Claimed) -> None:
        reported = False
        deltas = self._deltas(ticket, claimed)
        try:
            started = time.monotonic()
            result = self._attempts.run(
                self._client_for(self._config.provider(ticket.provider)),
                self._config.model(ticket.model),
                claimed.payload,
                deltas,
            )
            if result.completion is not None:
                outcome = self._succeeded(ticket, started, result)
                outcome, escalation = cascade.review(
                    self._config, claimed, outcome, self._ask_judge
                )
                if escalation is not None:
                    self._escalate(ticket, claimed, outcome, escalation, result)
                else:
                    self._finish(ticket, claimed, outcome, result, deltas)
            else:
                decision = after_error(
                    self._config, claimed.model, ticket.model, result.error, claimed.failures
                )
                if isinstance(decision, Fail):
                    outcome = self._outcome(
                        ticket, started, result, error_code=decision.code, error=decision.message
                    )
                    self._finish(ticket, claimed, outcome, result, deltas)
                else:
                    self._hand_back(ticket, claimed, decision, result)
            reported = True
        finally:
            if not reported:  # recording failed: at least give the slot back
                self._feedback.release(ticket)

    def _ask_judge(
        self, config: CascadeConfig, asked: dict, answer: str
    ) -> tuple[Verdict, tuple[Call, ...]]:
        """The cascade's judge reads ``answer``: one attempt on its model (retried, through
        the breakers), its calls recorded with the attempt it judges."""
        model = self._config.model(config.judge)
        result = self._attempts.run(
            self._client_for(self._config.provider(model.provider)),
            model,
            judge.payload(asked, answer, config.judge_max_tokens),
        )
        return judge.verdict_of(result), result.calls

    def _deltas(self, ticket: Ticket, claimed: Claimed) -> DeltaWriter | None:
        """Where a streamed request's text goes as it is written; None for the rest, and for
        an answer a cascade may still turn down (its caller gets the one that stands)."""
        if not claimed.streamed or cascade.may_escalate(self._config, claimed):
            return None
        return DeltaWriter(self._redis, ticket.request_id, ticket.attempt, ticket.model)

    def _finish(
        self,
        ticket: Ticket,
        claimed: Claimed,
        outcome: Outcome,
        result: AttemptResult,
        deltas: DeltaWriter | None = None,
    ) -> None:
        recorded = self._recorder.finish(claimed, outcome)
        if deltas is not None:  # its reader takes the rest from the row now
            deltas.end()
        if self._sharing is not None and recorded:
            if outcome.succeeded:
                self._sharing.succeeded(ticket, claimed, outcome)
            else:
                self._sharing.failed(ticket)
        if not recorded:
            log.warning("attempt %s/%d was already finished", *_attempt(ticket))
        else:
            log.info(
                "request %s attempt %d on %s: %s in %d ms, %d micro-dollars",
                *_attempt(ticket),
                ticket.provider,
                outcome.error_code or "succeeded",
                outcome.latency_ms,
                outcome.cost_micros,
            )
        self._report(ticket, outcome, result, recorded)

    def _escalate(
        self,
        ticket: Ticket,
        claimed: Claimed,
        outcome: Outcome,
        escalation: Escalation,
        result: AttemptResult,
    ) -> None:
        moved = self._recorder.escalate(claimed, outcome, escalation)
        if moved:
            entry = dataclasses.replace(
                ticket.queue_entry, model=escalation.next_model, chain_index=0, cache="-"
            )
            queues.push_front(self._redis, claimed.team_id, ticket.priority_level, [entry])
            log.info(
                "request %s: %s's answer escalated to %s",
                ticket.request_id,
                outcome.model,
                escalation.next_model,
            )
        if self._sharing is not None:
            self._sharing.failed(ticket)  # its waiters go back: they may fly on their own
        self._report(ticket, outcome, result, moved)

    def _report(
        self, ticket: Ticket, outcome: Outcome, result: AttemptResult, recorded: bool
    ) -> None:
        """Scheduler feedback for an attempt that got an answer or a final failure: slot,
        fairness correction, rate-limit signal, breaker, budget settlement."""
        completion = result.completion
        self._feedback.finished(
            ticket,
            input_tokens=outcome.input_tokens + outcome.cached_input_tokens,
            output_tokens=outcome.output_tokens,
            cost_micros=outcome.cost_micros,
            recorded=recorded,
            signal=completion.rate if completion is not None else None,
            healthy=result.healthy,
            succeeded=outcome.succeeded,
            latency_ms=outcome.latency_ms,
        )

    def _hand_back(
        self, ticket: Ticket, claimed: Claimed, decision: HandBack, result: AttemptResult
    ) -> None:
        back = dataclasses.replace(decision, calls=result.calls)
        if self._recorder.hand_back(claimed, back):
            entry = dataclasses.replace(ticket.queue_entry, chain_index=back.chain_index)
            queues.push_front(self._redis, claimed.team_id, ticket.priority_level, [entry])
            if self._sharing is not None:
                self._sharing.failed(ticket)
            log.info(
                "request %s: %s on %s; queued again at chain position %d",
                ticket.request_id,
                getattr(result.error, "code", "error"),
                ticket.provider,
                back.chain_index,
            )
        rate_limited = isinstance(result.error, ProviderRateLimited)
        self._feedback.handed_back(
            ticket,
            rate_limited=rate_limited,
            retry_after_s=result.retry_after,
            healthy=result.healthy,
        )

    def _outcome(self, ticket: Ticket, started: float, result: AttemptResult, **fields) -> Outcome:
        latency_ms = int((time.monotonic() - started) * 1000)
        return Outcome(
            model=ticket.model,
            provider=ticket.provider,
            latency_ms=latency_ms,
            calls=result.calls,
            **fields,
        )

    def _succeeded(self, ticket: Ticket, started: float, result: AttemptResult) -> Outcome:
        completion = result.completion
        model = self._config.model(ticket.model)
        return self._outcome(
            ticket,
            started,
            result,
            output=completion.text,
            finish_reason=completion.finish_reason,
            stop_sequence=completion.stop_sequence,
            input_tokens=completion.input_tokens,
            cached_input_tokens=completion.cached_input_tokens,
            output_tokens=completion.output_tokens,
            cost_micros=result.calls[-1].cost_micros,
            cache_savings_micros=cache_savings(completion, model),
        )

    def close(self) -> None:
        self._calls.shutdown(wait=True)
        for client in self._clients.values():
            client.close()


def _attempt(ticket: Ticket) -> tuple[str, int]:
    return ticket.request_id, ticket.attempt
