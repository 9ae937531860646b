"""Public request and response models of the HTTP API, shared by the server and the client.

Here: what the job API answers (a job, its results and their provider calls and route, the
error body) and a job's webhook deliveries. Imported from here too, each defined in its own
module: the shared field types (:mod:`.fields`), what a caller submits (:mod:`.requests`:
:class:`RequestIn`, :class:`JobCreate`, ...) and the operators' models (:mod:`.admin`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from broker.schemas.admin import (
    AlertList,
    AlertOut,
    Backlog,
    BreakerList,
    BreakerOut,
    BreakerTransitionOut,
    BudgetLimitIn,
    BudgetList,
    BudgetOut,
    PauseIn,
    TeamList,
    TeamPauseOut,
    TeamStatusOut,
    WeightIn,
)
from broker.schemas.fields import (
    NUL_FREE,
    MetadataValue,
    NulFree,
    WebhookEvent,
    WebhookUrl,
    no_nul,
)
from broker.schemas.requests import (
    CHAT_PARAMETERS,
    INT64,
    CacheControl,
    EmbeddingText,
    JobCreate,
    JsonSchemaFormat,
    Message,
    RequestIn,
    ResponseFormat,
    StopSequence,
)
from broker.states import JobStatus, Priority, RequestStatus

__all__ = [
    "CHAT_PARAMETERS",
    "INT64",
    "NUL_FREE",
    "AlertList",
    "AlertOut",
    "Backlog",
    "BreakerList",
    "BreakerOut",
    "BreakerTransitionOut",
    "BudgetLimitIn",
    "BudgetList",
    "BudgetOut",
    "CacheControl",
    "CacheInfo",
    "CallOut",
    "CascadeCheckOut",
    "EmbeddingText",
    "ErrorBody",
    "ErrorDetail",
    "JobCounts",
    "JobCreate",
    "JobList",
    "JobOut",
    "JsonSchemaFormat",
    "Message",
    "MetadataValue",
    "NulFree",
    "PauseIn",
    "Priority",
    "RequestIn",
    "ResponseFormat",
    "ResultError",
    "ResultOut",
    "ResultsPage",
    "RouteDecisionOut",
    "StopSequence",
    "TeamList",
    "TeamPauseOut",
    "TeamStatusOut",
    "Usage",
    "WebhookAttemptOut",
    "WebhookDeliveryList",
    "WebhookDeliveryOut",
    "WebhookEvent",
    "WebhookUrl",
    "WeightIn",
    "no_nul",
]


class CacheInfo(BaseModel):
    """How a result was answered from the response cache (charged: 0)."""

    hit: Literal["exact", "semantic", "single_flight"]
    source_request_id: str = Field(description="The request whose answer it reused.")
    cost_avoided_micros: int = Field(description="What that answer had cost.")


class JobCounts(BaseModel):
    total: int
    pending: int = Field(description="Not yet in a terminal state.")
    succeeded: int
    failed: int
    cancelled: int
    expired: int


class Usage(BaseModel):
    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0


class JobOut(BaseModel):
    id: str
    team: str
    feature: str
    priority: Priority
    status: JobStatus
    counts: JobCounts
    usage: Usage
    cost_micros: int
    cost_usd: str
    cache_hits: int = Field(default=0, description="Requests answered from the cache (free).")
    cost_avoided_micros: int = Field(default=0, description="What those answers had cost.")
    webhook_url: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    expires_at: datetime | None = Field(
        default=None, description="Requests still queued then end as expired."
    )


class JobList(BaseModel):
    data: list[JobOut]
    has_more: bool


class ResultError(BaseModel):
    code: str
    message: str


class CallOut(BaseModel):
    """One provider call made for a request."""

    attempt: int = Field(description="The dispatch it belonged to (1, 2, ...).")
    try_: int = Field(alias="try", description="Its number within that dispatch.")
    model: str
    provider: str
    outcome: str = Field(description="succeeded, or the error code (rate_limited, ...).")
    error: str | None = None
    latency_ms: int
    cost_micros: int

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class CascadeCheckOut(BaseModel):
    """A cascade's verdict on one tier's answer."""

    tier: int
    model: str
    accept: bool
    check: str | None = Field(default=None, description="The check that turned it down.")
    reason: str
    shadow: bool = Field(description="Recorded only: the answer stood either way.")


class RouteDecisionOut(BaseModel):
    """How a route chose this request's tier (and, with a cascade, what its checks said)."""

    route: str
    tier: int = Field(description="0 is the cheapest.")
    model: str
    layer: Literal["hint", "pin", "rule", "learned", "default"]
    score: float | None = Field(
        default=None, description="The learned router's P(cheaper tier acceptable), if it spoke."
    )
    reason: str
    checks: list[CascadeCheckOut] = Field(default_factory=list)
    escalated: bool = Field(default=False, description="A check sent it up a tier.")


class ResultOut(BaseModel):
    id: str
    custom_id: str
    status: RequestStatus
    model: str = Field(description="The model asked for (a route's chosen tier).")
    route: RouteDecisionOut | None = None
    model_used: str | None = None
    provider: str | None = None
    output: str | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    cost_micros: int | None = None
    latency_ms: int | None = None
    attempts: int
    error: ResultError | None = None
    metadata: dict[str, Any] | None = None
    cache: CacheInfo | None = Field(default=None, description="Set when answered from the cache.")
    calls: list[CallOut] = Field(
        default_factory=list,
        description="Every provider call made for it, in order: retries and fallbacks included.",
    )


class ResultsPage(BaseModel):
    data: list[ResultOut]
    has_more: bool
    next_after: int | None = Field(default=None, description="Pass as ?after= for the next page.")


class ErrorDetail(BaseModel):
    type: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class WebhookAttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None = Field(default=None, description="The receiver's answer, if any.")
    error: str | None = Field(default=None, description="Why it did not count as delivered.")
    duration_ms: int


class WebhookDeliveryOut(BaseModel):
    """One event for the job's webhook_url and every attempt to deliver it."""

    id: str = Field(description="The delivery id: the webhook-id header, the same on retries.")
    type: WebhookEvent
    url: str
    status: Literal["pending", "delivered", "failed"]
    attempts: list[WebhookAttemptOut]
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None


class WebhookDeliveryList(BaseModel):
    data: list[WebhookDeliveryOut] = Field(description="Oldest first.")
