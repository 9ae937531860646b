"""The real scheduler against an in-process provider pool, for fairness tests and benchmarks.

Everything that decides is the production code on a real Redis: the team queues, the
:class:`~schedulers.loop.Scheduler` round (fair queueing, priorities, routing, in-flight slots,
rate-limit buckets), and the worker-side :class:`~schedulers.feedback.Feedback` that frees slots
and corrects fairness charges. Only the database, Celery and the provider are replaced, by a
pool that holds dispatched requests and finishes each of them with a given probability per step,
with its actual usage. Time is counted in steps (one scheduling round each), so a run is
reproducible from its seed.

``service`` is what each team has received: the actual weighted service of every request
dispatched to it, counted at dispatch, as the VTC paper counts it.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import redis

from broker import queues
from broker.config.broker_toml import BrokerConfig
from broker.queues import QueueEntry
from broker.states import Priority
from schedulers.capacity import InFlight
from schedulers.dispatch import Pick, hold
from schedulers.fairness import OutputEstimates, ServiceMeter
from schedulers.feedback import Feedback
from schedulers.loop import Scheduler
from schedulers.ratelimits import RateLimits
from schedulers.ticket import Ticket

#: (estimated input, max_tokens, actual input, actual output) of one request.
Size = tuple[int, int, int, int]


@dataclass
class _Request:
    team: str
    size: Size


class Pool:
    """Stands in for the dispatcher and the worker pools: holds what was sent until it ends."""

    def __init__(self, client: redis.Redis, in_flight: InFlight, limits: RateLimits) -> None:
        self._redis = client
        self._in_flight = in_flight
        self._limits = limits
        self.running: list[tuple[Ticket, Size]] = []
        self.sizes: dict[str, _Request] = {}
        self.sent: list[Pick] = []

    def dispatch(self, picks: Sequence[Pick]) -> tuple[list[Pick], list[Pick]]:
        hold(self._redis, self._in_flight, self._limits, picks)
        for pick in picks:
            ticket = pick.ticket(attempt=1)
            self.running.append((ticket, self.sizes[pick.entry.request_id].size))
        self.sent.extend(picks)
        return list(picks), []

    def recover(self) -> int:
        return 0

    def fail(self, failures: Sequence[tuple[QueueEntry, str, str]]) -> None:
        if failures:
            raise AssertionError(f"requests failed in a harness run: {failures[:3]}")


@dataclass
class Harness:
    client: redis.Redis
    config: BrokerConfig
    weights: Mapping[str, float]
    seed: int = 0
    finish_probability: float = 0.5
    service: dict[str, float] = field(default_factory=dict)
    steps: int = 0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        in_flight = InFlight(self.client, self.config, margin=0)
        limits = RateLimits(self.client, self.config)
        self.pool = Pool(self.client, in_flight, limits)
        self.feedback = Feedback(self.client, self.config)
        self.meter = ServiceMeter(self.config)
        self.scheduler = Scheduler(
            self.client,
            self.config,
            in_flight,
            limits,
            self.pool,  # type: ignore[arg-type]
            weights=lambda: self.weights,
            outputs=OutputEstimates(self.client, refresh_s=0),  # a round is the harness's time
        )
        self._seq = 0

    def submit(
        self,
        team: str,
        sizes: Sequence[Size],
        *,
        priority: Priority = Priority.MEDIUM,
        model: str = "gpt-4o-mini",
        account_to: str | None = None,
    ) -> list[str]:
        """Queue one request per size for ``team``; returns their ids.

        ``account_to`` counts their service to another team than the queue's (a FIFO baseline
        puts every team's requests in one queue).
        """
        entries, ids = [], []
        now = queues.now_ms()
        for size in sizes:
            self._seq += 1
            rid = f"req_{team}_{self._seq}"
            est_in, max_out, _, _ = size
            entries.append((priority, QueueEntry(rid, model, 4 * est_in, max_out, now)))
            self.pool.sizes[rid] = _Request(account_to or team, size)
            ids.append(rid)
        queues.push(self.client, team, entries)
        return ids

    def random_sizes(self, n: int, *, max_input: int = 400, max_output: int = 200) -> list[Size]:
        """Random requests: actual usage at most the estimate, as a real bound guarantees."""
        out = []
        for _ in range(n):
            est_in = self._rng.randint(10, max_input)
            max_out = self._rng.randint(10, max_output)
            out.append(
                (est_in, max_out, self._rng.randint(1, est_in), self._rng.randint(1, max_out))
            )
        return out

    def step(self) -> int:
        """One scheduling round, then each running request finishes with the set probability."""
        before = len(self.pool.sent)
        dispatched = self.scheduler.run_once()
        for pick in self.pool.sent[before:]:
            request = self.pool.sizes[pick.entry.request_id]
            _, _, actual_in, actual_out = request.size
            served = self.meter.service(pick.model, actual_in, actual_out)
            self.service[request.team] = self.service.get(request.team, 0.0) + served
        still = []
        for ticket, size in self.pool.running:
            if self._rng.random() < self.finish_probability:
                _, _, actual_in, actual_out = size
                self.feedback.finished(ticket, input_tokens=actual_in, output_tokens=actual_out)
            else:
                still.append((ticket, size))
        self.pool.running = still
        self.steps += 1
        return dispatched

    def normalised(self) -> dict[str, float]:
        """Service received divided by weight."""
        return {t: s / self.weights.get(t, 1.0) for t, s in self.service.items()}


def jain_index(values: Sequence[float]) -> float:
    """Jain's fairness index: 1 when all equal, 1/n when one has everything."""
    if not values or not any(values):
        return 1.0
    return sum(values) ** 2 / (len(values) * sum(v * v for v in values))
