"""The ``rich`` progress bar shown by ``Job.wait(progress=True)``: done/total, succeeded, failed."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from broker.schemas.http import JobOut


class JobProgress:
    """A context manager that renders nothing when disabled; ``update`` takes the latest job."""

    def __init__(self, enabled: bool, *, console: Console | None = None) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "[green]{task.fields[succeeded]} ok[/] [red]{task.fields[failed]} failed"
                ),
                TimeElapsedColumn(),
                console=console or Console(stderr=True),
            )

    def __enter__(self) -> JobProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(self, job: JobOut) -> None:
        if self._progress is None:
            return
        counts = job.counts
        done = counts.total - counts.pending
        description = f"{job.id} {job.status}"
        if self._task is None:
            self._task = self._progress.add_task(
                description, total=counts.total, succeeded=0, failed=0
            )
        self._progress.update(
            self._task,
            description=description,
            total=counts.total,
            completed=done,
            succeeded=counts.succeeded,
            failed=counts.failed,
        )
