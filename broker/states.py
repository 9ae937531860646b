"""Names of states and priorities, as ``str`` enums so they store and serialise as plain text."""

from __future__ import annotations

from enum import StrEnum


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


#: Served in this order inside a team.
PRIORITY_ORDER = (Priority.HIGH, Priority.MEDIUM, Priority.LOW)


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.CANCELLED)


class RequestStatus(StrEnum):
    QUEUED = "queued"
    WAITING_BUDGET = "waiting_budget"
    DISPATCHED = "dispatched"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_REQUEST_STATES


TERMINAL_REQUEST_STATES = frozenset(
    {RequestStatus.SUCCEEDED, RequestStatus.FAILED, RequestStatus.CANCELLED, RequestStatus.EXPIRED}
)

FEATURES = (
    "chatbot",
    "summarization",
    "code-generation",
    "content-moderation",
    "search",
    "classification",
    "translation",
    "data-extraction",
)
