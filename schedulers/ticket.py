"""What the scheduler hands a worker pool for one attempt: the Celery task's keyword arguments.

The ticket carries everything the worker needs to report back without asking the scheduler:
which attempt it is (so a stale or redelivered task does nothing), where to call, the queue
entry (to put the request back where it was after a 429), and the fairness charge made at
dispatch (to correct it with the actual usage).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from broker.queues import QueueEntry
from broker.states import Priority


@dataclass(frozen=True, slots=True)
class Ticket:
    request_id: str
    attempt: int
    team: str
    priority: str
    provider: str
    model: str
    entry: str
    service: float

    @property
    def queue_entry(self) -> QueueEntry:
        return QueueEntry.decode(self.entry)

    @property
    def priority_level(self) -> Priority:
        return Priority(self.priority)

    def as_kwargs(self) -> dict[str, Any]:
        # Not dataclasses.asdict: it deep-copies every field, a tenth of a dispatch round's CPU.
        return {name: getattr(self, name) for name in _FIELDS}

    def encode(self) -> str:
        """One line for the dispatch journal (written before the attempt number is known: a
        replay takes it from the database)."""
        return " ".join(
            (
                str(self.attempt),
                self.team,
                self.priority,
                self.provider,
                self.model,
                repr(self.service),
                self.entry,
            )
        )

    @classmethod
    def decode(cls, request_id: str, raw: bytes | str) -> Ticket:
        text = raw.decode() if isinstance(raw, bytes) else raw
        attempt, team, priority, provider, model, service, entry = text.split(" ", 6)
        return cls(request_id, int(attempt), team, priority, provider, model, entry, float(service))


_FIELDS = tuple(f.name for f in fields(Ticket))
