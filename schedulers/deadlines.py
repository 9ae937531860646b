"""Completion windows: requests of a job still waiting when its window closes end ``expired``.

A job's ``completion_window`` (default 24h) fixes ``expires_at`` at submission. Every few
seconds the leader expires what never started (queued, or held by a budget) in jobs past it;
requests already running finish and are recorded, and the job ends with its last one, reporting
the expired ones. Their queue entries are skipped when they come up: dispatching only takes
requests the database still has queued.
"""

from __future__ import annotations

import logging

from broker.store import Database, transitions

log = logging.getLogger(__name__)


class Deadlines:
    def __init__(self, db: Database) -> None:
        self._db = db

    def expire(self) -> int:
        expired = self._db.write(transitions.expire_overdue)
        for job_id, n in expired.items():
            log.info("job %s: %d requests expired at the end of its completion window", job_id, n)
        return sum(expired.values())
