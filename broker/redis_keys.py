"""Every Redis key the broker uses is built here, so the layout can be read in one place.

Redis holds only the fast path (queues, in-flight sets, fairness counters, rate-limit buckets,
breakers, wake-ups, the leader lease); all of it can be rebuilt from the database or starts
afresh safely.
"""

from __future__ import annotations

from broker.states import Priority

PREFIX = "ib"


def team_queue_prefix() -> str:
    return f"{PREFIX}:q:"


def team_queue(team_id: str, priority: Priority | str) -> str:
    """List of queue entries (see :mod:`broker.queues`) for one team and priority."""
    return f"{team_queue_prefix()}{team_id}:{Priority(priority).value}"


def backlogged_teams() -> str:
    """Set of team ids that have (or recently had) queued work."""
    return f"{PREFIX}:teams"


def in_flight(provider: str) -> str:
    """Sorted set of request ids handed to a provider's pool, scored by dispatch time."""
    return f"{PREFIX}:inflight:{provider}"


def scheduler_wake() -> str:
    """List the scheduler blocks on between rounds; pushed on submission and on completion."""
    return f"{PREFIX}:wake"


def fair_counters() -> str:
    """Hash team → virtual counter (weighted service / weight); written by the leader only."""
    return f"{PREFIX}:vtc:counter"


def fair_corrections() -> str:
    """Hash team → service to add to its counter (actual minus charged), written by workers."""
    return f"{PREFIX}:vtc:correction"


def output_lengths() -> str:
    """Hash ``<team>|<feature>|<model>|s`` and ``|n`` → output tokens written and answers
    counted, by workers; fair queueing's estimate of an answer's length
    (:mod:`schedulers.fairness`)."""
    return f"{PREFIX}:vtc:outputs"


def fair_floor() -> str:
    """The smallest backlogged counter when last seen: where an idle team re-enters."""
    return f"{PREFIX}:vtc:floor"


def service_received() -> str:
    """Hash team → weighted service actually received (for shares of service)."""
    return f"{PREFIX}:vtc:service"


def rate_bucket(scope: str, kind: str) -> str:
    """Hash {level, at}: a token bucket (``kind`` rpm or tpm) of a provider or model scope."""
    return f"{PREFIX}:bucket:{scope}:{kind}"


def rate_blocked(scope: str) -> str:
    """Present (with a TTL) while a provider or model asked us to wait after a 429."""
    return f"{PREFIX}:blocked:{scope}"


def scheduler_leader() -> str:
    """The leader lease (a redis-py lock): exactly one scheduler dispatches."""
    return f"{PREFIX}:scheduler:leader"


def dispatch_journal() -> str:
    """Hash request id → ticket of the round being dispatched; replayed by a new leader."""
    return f"{PREFIX}:scheduler:dispatching"


def budget(budget_id: str, window_id: str) -> str:
    """Hash {spent, reserved, loaded} of one budget in one window, in micro-dollars."""
    return f"{PREFIX}:budget:{budget_id}:{window_id}"


def trace_budget(team_id: str, trace_id: str) -> str:
    """Hash {spent, reserved, loaded} of one trace under its team's per-trace ceiling."""
    return f"{PREFIX}:budget:trace:{team_id}:{trace_id}"


def reservations() -> str:
    """Hash request id → "<amount> <budget key> ..." of its attempt's reservation."""
    return f"{PREFIX}:resv"


def reservation_times() -> str:
    """Sorted set of request ids with a reservation, scored by when it was made (for the reaper)."""
    return f"{PREFIX}:resv:at"


def settled(request_id: str, attempt: int) -> str:
    """Present once an attempt's cost has been settled: a redelivered task cannot settle twice."""
    return f"{PREFIX}:settled:{request_id}:{attempt}"


def held(team_id: str) -> str:
    """List of "<priority> <queue entry>" a team's budget policy holds (``waiting_budget``)."""
    return f"{PREFIX}:held:{team_id}"


def held_teams() -> str:
    """Set of teams with held requests."""
    return f"{PREFIX}:held:teams"


def parked(team_id: str) -> str:
    """List of "<priority> <queue entry>" set aside because every model of their chain is behind
    an open circuit breaker (still ``queued`` in the database; see :mod:`schedulers.parking`)."""
    return f"{PREFIX}:parked:{team_id}"


def parked_teams() -> str:
    """Set of teams with parked requests."""
    return f"{PREFIX}:parked:teams"


def paused_teams() -> str:
    """Set of teams whose queues are paused (spend-velocity breaker or an operator)."""
    return f"{PREFIX}:paused"


def epoch() -> str:
    """Set once Redis holds what the database says it should; missing: Redis lost its data."""
    return f"{PREFIX}:epoch"


def alerts() -> str:
    """List of recent alerts (JSON), newest first, capped."""
    return f"{PREFIX}:alerts"


def alert_sent(subject: str, threshold: str) -> str:
    """Present once an alert for ``subject`` at ``threshold`` has fired in its window."""
    return f"{PREFIX}:alerted:{subject}:{threshold}"


def breaker(scope: str) -> str:
    """Hash of a provider or model scope's circuit breaker: its state and a ring of per-second
    call and failure counts (see :mod:`workers.breakers`); expires when idle."""
    return f"{PREFIX}:breaker:{scope}"


def breaker_transitions() -> str:
    """List of recent breaker transitions (JSON), newest first, capped at 1000."""
    return f"{PREFIX}:breaker:transitions"


def metrics_counter(name: str) -> str:
    """Hash of one Prometheus counter (see :mod:`broker.telemetry.metrics`), e.g. ``ib:metrics:requests``:
    field ``label=value,label=value`` (the metric's labels in a fixed order; ``%``, ``,``, ``;``
    and ``=`` in a value are percent-encoded) → an integer count. Workers and the scheduler add
    to it on pipelines they already send; the API reads it at scrape time. Lost with Redis, it
    starts again from 0, which Prometheus reads as a counter reset."""
    return f"{PREFIX}:metrics:{name}"


def metrics_histogram(name: str) -> str:
    """Hash of one Prometheus histogram (see :mod:`broker.telemetry.metrics`), e.g.
    ``ib:metrics:request_latency``: field ``<labels>;le=<bound in ms>`` (or ``;le=+Inf``) → the
    observations in that bucket alone (above the previous bound; the API makes them cumulative
    and counts them), and ``<labels>;sum_ms`` → the sum of the observations in milliseconds.
    Lost with Redis, it starts again from 0 like the counters."""
    return f"{PREFIX}:metrics:{name}"


def cache_entry(key: str) -> str:
    """String: one cached answer (JSON, :mod:`broker.cache.exact`), with its TTL."""
    return f"ib:cache:e:{key}"


def cache_index(team: str, feature: str) -> str:
    """Set: the cache keys a team's feature stored (``*`` in a SCAN pattern), for purging."""
    return f"ib:cache:i:{team}:{feature}"


def flight(key: str) -> str:
    """String: the request id whose provider call will answer this cache key (single-flight),
    with a TTL so a leader lost with its worker stops holding the others back."""
    return f"ib:flight:{key}"


def flight_waiters(key: str) -> str:
    """List of ``<team> <priority> <entry>``: requests waiting for the flight of this key."""
    return f"ib:flight:w:{key}"


def flights_waiting() -> str:
    """Set: the cache keys that have waiters, for the sweep that frees those of lost flights."""
    return "ib:flights"


def semantic_prefix() -> str:
    """Prefix of the semantic index's keys, per semantic scope (their layout:
    :func:`broker.cache.semantic.index.scope_keys`)."""
    return "ib:sem"


def semantic_pending(request_id: str) -> str:
    """Hash: a queued request's final-turn vector, text, scope and exact key, indexed by the
    worker that lands its answer (:mod:`broker.cache.semantic.serving`)."""
    return f"ib:sempending:{request_id}"


def idempotency(team_id: str, surface: str, key: str) -> str:
    """The object a create with this ``Idempotency-Key`` made (string, 24 h)."""
    return f"{PREFIX}:idem:{team_id}:{surface}:{key}"


def request_ended(request_id: str) -> str:
    """Pub/sub channel: one message when an interactive request reaches a terminal state."""
    return f"{PREFIX}:ended:{request_id}"


def deltas(request_id: str) -> str:
    """Stream: a streamed request's answer as it is written (:mod:`broker.deltas`)."""
    return f"{PREFIX}:deltas:{request_id}"
