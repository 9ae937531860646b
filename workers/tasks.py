"""Celery tasks. The task bodies only hand over to the process's :class:`Executor`.

``execute`` carries one attempt; ``execute_many`` several for the same provider (the scheduler
packs what one round sends a provider, so per-message costs are paid once per message, not once
per request). A redelivered message runs again whole, and each of its attempts is claimed again:
the ones that already ended are stale and do nothing.
"""

from __future__ import annotations

from typing import Any

from celery import Celery, Task

from schedulers.ticket import Ticket
from workers.celery_app import EXECUTE, EXECUTE_MANY
from workers.execution import Executor


def register_tasks(app: Celery, executor: Executor) -> None:
    """Bind the execute tasks to ``app``, running attempts on ``executor``."""

    @app.task(name=EXECUTE, bind=True, acks_late=True, reject_on_worker_lost=True)
    def execute(task: Task, **ticket) -> None:
        executor.run(Ticket(**ticket))

    @app.task(name=EXECUTE_MANY, bind=True, acks_late=True, reject_on_worker_lost=True)
    def execute_many(task: Task, tickets: list[dict[str, Any]]) -> None:
        executor.run_many([Ticket(**ticket) for ticket in tickets])
