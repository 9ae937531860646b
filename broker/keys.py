"""Every Redis key the broker uses is built here, so the layout can be read in one place.

Redis holds only the fast path (queues, in-flight sets, wake-ups); all of it can be rebuilt
from the database.
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
