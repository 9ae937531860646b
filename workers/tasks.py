"""Celery tasks. The task body only hands over to the process's :class:`Executor`."""

from __future__ import annotations

from celery import Celery, Task

from schedulers.ticket import Ticket
from workers.celery_app import EXECUTE
from workers.execution import Executor


def register_tasks(app: Celery, executor: Executor) -> None:
    """Bind the execute task to ``app``, running attempts on ``executor``."""

    @app.task(name=EXECUTE, bind=True, acks_late=True, reject_on_worker_lost=True)
    def execute(task: Task, **ticket) -> None:
        executor.run(Ticket(**ticket))
