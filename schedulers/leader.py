"""Exactly one scheduler leads: a Redis lock with a lease, renewed while the leader lives.

Any number of scheduler processes may run. Each asks :meth:`Leadership.lead` before every
round; the one holding the lease renews it (every third of the lease), the others try to take
it and otherwise wait. When the leader dies its lease runs out and a standby takes over within
``lease_s`` plus its polling interval. A leader that stops cleanly hands the lease back at once.

The lock is redis-py's (a token compared and extended by Lua scripts), not our own. A leader
paused for longer than its lease (a long GC or network stall) may run one more round beside the
new leader; that cannot dispatch a request twice, because dispatching is a conditional update
in the database (queued → dispatched) that only one writer wins.
"""

from __future__ import annotations

import logging
import time

import redis
from redis.exceptions import LockError

from broker import redis_keys

log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, client: redis.Redis, lease_s: float) -> None:
        self._lease_s = lease_s
        self._lock = client.lock(redis_keys.scheduler_leader(), timeout=lease_s, thread_local=False)
        self._renewed_at = 0.0
        self.leading = False

    def lead(self) -> bool:
        """Whether this process leads now. Cheap enough to call before every round."""
        now = time.monotonic()
        if self.leading:
            if now - self._renewed_at >= self._lease_s / 3:
                try:
                    self._lock.reacquire()
                    self._renewed_at = now
                except LockError:
                    log.warning("lost the scheduler lease; standing by")
                    self.leading = False
            return self.leading
        if self._lock.acquire(blocking=False):
            self.leading, self._renewed_at = True, now
            log.info("took the scheduler lease; leading")
            return True
        return False

    def resign(self) -> None:
        if self.leading:
            self.leading = False
            try:
                self._lock.release()
            except LockError:
                pass
