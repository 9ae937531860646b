"""What the leader does around its rounds: check Redis still holds what it should, and, every
few seconds, resume held requests, reap attempts of dead workers, watch spend velocity and
expire requests past their job's completion window, send due webhook deliveries,
and now and then (and first of all) put back queued requests Redis lost and reconcile idle
budgets with the ledger."""

from __future__ import annotations

import time

from schedulers.budgets import Budgets
from schedulers.deadlines import Deadlines
from schedulers.holding import Holding
from schedulers.recovery import Recovery
from schedulers.velocity import VelocityBreaker
from schedulers.webhook_outbox import WebhookOutbox


class Housekeeping:
    def __init__(
        self,
        recovery: Recovery,
        holding: Holding,
        velocity: VelocityBreaker,
        budgets: Budgets,
        deadlines: Deadlines,
        every_s: float = 2.0,
        reconcile_every_s: float = 10.0,
        webhooks: WebhookOutbox | None = None,
    ) -> None:
        self._webhooks = webhooks
        self._budgets = budgets
        self._deadlines = deadlines
        self._reconcile_every_s = reconcile_every_s
        self._reconciled = float("-inf")
        self._recovery = recovery
        self._holding = holding
        self._velocity = velocity
        self._every_s = every_s
        self._last = float("-inf")

    def __call__(self) -> None:
        """Before a round: cheap when there is nothing to do (one EXISTS)."""
        self._recovery.ensure_epoch()
        now = time.monotonic()
        if now - self._last >= self._every_s:
            self._last = now
            self._velocity.check()
            self._recovery.reap()
            self._holding.resume()
            self._deadlines.expire()
            if self._webhooks is not None:
                self._webhooks.send_due()
        if now - self._reconciled >= self._reconcile_every_s:
            self._reconciled = now
            self._recovery.reconcile_queues()
            self._recovery.requeue_lost_tasks()
            self._budgets.reconcile()
