"""Public request and response models of the HTTP API, shared by the server and the client."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from broker.states import JobStatus, Priority, RequestStatus

MetadataValue = str | int | float | bool | None
WebhookEvent = Literal["job.finished", "request.finished"]

NUL_FREE = r"^[^\x00]*$"
"""What a string bound for a text column may be: PostgreSQL cannot store a NUL character, and
SQLite would keep it where PostgreSQL refuses it. (JSON columns, such as messages and metadata,
take one escaped.)"""


def no_nul(value: Any) -> Any:
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain a NUL character (\\x00)")
    return value


NulFree = Annotated[str, BeforeValidator(no_nul), Field(json_schema_extra={"pattern": NUL_FREE})]
"""A string without NUL characters, refused with a message that says so (422 naming the field);
the schema carries the rule as a pattern. Length limits go on the field as usual."""

WebhookUrl = Annotated[
    str,
    BeforeValidator(no_nul),
    Field(max_length=2048, pattern=r"^https?://"),
    Field(json_schema_extra={"pattern": r"^https?://[^\x00]*$"}),
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Message(_Model):
    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=2_000_000)


EmbeddingText = Annotated[str, Field(min_length=1, max_length=100_000)]


class CacheControl(_Model):
    """Per-request control of the response cache, in the spirit of HTTP's Cache-Control:
    ``read: false`` is ``no-cache`` (ask the provider; with ``store`` still true, the fresh
    answer replaces the cached one: a refresh), ``store: false`` is ``no-store``, ``ttl_s`` is
    ``max-age`` for the answer kept (at most the policy's)."""

    read: bool = Field(default=True, description="Answer from the cache when it can.")
    store: bool = Field(default=True, description="Keep this request's answer in the cache.")
    ttl_s: int | None = Field(default=None, ge=1, le=90 * 86_400)


class CacheInfo(BaseModel):
    """How a result was answered from the response cache (charged: 0)."""

    hit: Literal["exact", "semantic", "single_flight"]
    source_request_id: str = Field(description="The request whose answer it reused.")
    cost_avoided_micros: int = Field(description="What that answer had cost.")


INT64 = 2**63
"""``seed`` is a signed 64-bit integer at the providers that take one."""

CHAT_PARAMETERS = ("top_p", "stop", "seed", "top_k", "response_format")
"""Sampling and output parameters of a chat request, in the payload only when set."""


class JsonSchemaFormat(_Model):
    """``response_format.json_schema``: the JSON Schema the answer must follow (OpenAI's
    structured outputs; the Anthropic adapter sends it as ``output_config.format``)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="The format's name: letters, digits, '_' and '-', up to 64.",
    )
    description: str | None = Field(default=None, max_length=10_000)
    schema_: dict[str, Any] | None = Field(
        default=None, alias="schema", description="A JSON Schema object."
    )
    strict: bool | None = Field(default=None, description="Enforce the schema exactly.")


class ResponseFormat(_Model):
    """What form the answer takes: free ``text`` (the default), any JSON object
    (``json_object``), or JSON following ``json_schema``."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = Field(
        default=None, description="Required with type json_schema, and only then."
    )

    @model_validator(mode="after")
    def _schema_with_its_type(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise PydanticCustomError(
                "response_format",
                'type json_schema needs json_schema: {"name": ..., "schema": {...}}',
            )
        if self.type != "json_schema" and self.json_schema is not None:
            raise PydanticCustomError(
                "response_format",
                "json_schema goes with type json_schema, not {type}",
                {"type": self.type},
            )
        return self


def _stop_list(value: Any) -> Any:
    """``stop`` as a list: one string is a list of one, and an empty list is no stop at all."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and not value:
        return None
    return value


StopSequence = Annotated[str, Field(min_length=1, max_length=1_000)]


class RequestIn(_Model):
    """One request of a batch."""

    custom_id: NulFree = Field(min_length=1, max_length=256, description="Unique within the batch.")
    input: list[EmbeddingText] | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="An embedding request's texts (instead of messages), for an embedding model.",
    )
    messages: list[Message] | None = Field(
        default=None,
        min_length=1,
        validate_default=True,
        description="A chat request's conversation (required unless input is given).",
    )
    dimensions: int | None = Field(
        default=None, ge=1, le=4096, description="Embedding length (embedding requests only)."
    )
    encoding_format: Literal["float", "base64"] | None = Field(
        default=None,
        description="How the OpenAI surface writes the vectors (embedding requests only).",
    )
    model: NulFree | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="A model of the catalog, or a route (a virtual model such as auto); "
        "left out: the team's or feature's default route.",
    )
    max_tokens: int = Field(default=256, ge=1, le=1_000_000)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float | None = Field(
        default=None, ge=0.0, le=1.0, description="Nucleus sampling: the probability mass kept."
    )
    stop: Annotated[list[StopSequence] | None, BeforeValidator(_stop_list)] = Field(
        default=None,
        max_length=4,
        description="Up to 4 sequences (or one string) the answer ends before "
        "(Anthropic's stop_sequences).",
    )
    seed: int | None = Field(
        default=None,
        ge=-INT64,
        lt=INT64,
        description="Best-effort determinism (OpenAI-format providers; others have none).",
    )
    top_k: int | None = Field(
        default=None,
        ge=1,
        description="Sample from the k likeliest tokens (Anthropic-format providers only; "
        "an OpenAI-format model refuses it).",
    )
    response_format: ResponseFormat | None = Field(
        default=None,
        description='{"type": "text"}, {"type": "json_object"}, or {"type": "json_schema", '
        '"json_schema": {"name", "schema", "strict"}}.',
    )
    priority: Priority | None = Field(default=None, description="Defaults to the job's priority.")
    trace_id: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="Groups the requests of one run (an agent loop) under the trace ceiling.",
    )
    metadata: dict[str, MetadataValue] | None = None
    cache: CacheControl | None = Field(
        default=None, description="Per-request cache control; the team's policy by default."
    )

    @field_validator("messages")
    @classmethod
    def _one_kind(cls, messages: list[Message] | None, info: ValidationInfo) -> Any:
        """Named on ``messages`` (``input`` is validated first): the field most requests miss."""
        embedding = info.data.get("input") is not None
        if messages is None and not embedding and "input" in info.data:
            # "missing", as when the field was simply required: the message a client expects
            raise PydanticCustomError(
                "missing", "Field required (or input, for an embedding request)"
            )
        if messages is not None and embedding:
            raise ValueError("give messages (a chat request) or input (an embedding one), not both")
        return messages

    @model_validator(mode="after")
    def _embedding_fields(self) -> RequestIn:
        if self.input is None and (self.dimensions or self.encoding_format):
            raise ValueError("dimensions and encoding_format are for embedding requests (input)")
        if self.input is not None:
            chat_only = [name for name in CHAT_PARAMETERS if getattr(self, name) is not None]
            if chat_only:
                raise ValueError(
                    f"{', '.join(chat_only)}: for chat requests (messages), not embedding "
                    "requests (input); leave it out"
                )
        return self

    def chat_parameters(self) -> dict[str, Any]:
        """The sampling and output parameters that are set, as the payload stores them: ``stop``
        a list, ``response_format`` without its defaults; ``{"type": "text"}``, the default
        form, left out like an absent one (the same answer, so the same cache key)."""
        found: dict[str, Any] = {}
        for name in CHAT_PARAMETERS:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, ResponseFormat):
                if value.type == "text":
                    continue
                value = value.model_dump(exclude_none=True, by_alias=True)
            found[name] = value
        return found

    @property
    def is_embedding(self) -> bool:
        return self.input is not None


class JobCreate(_Model):
    """``POST /v1/jobs``: a batch of requests for one feature."""

    feature: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    priority: Priority = Priority.MEDIUM
    webhook_url: WebhookUrl | None = None
    webhook_events: list[WebhookEvent] = Field(
        default_factory=lambda: ["job.finished"],
        min_length=1,
        description="What webhook_url receives: job.finished when the job ends, and/or "
        "request.finished as each request ends.",
    )
    completion_window: str = Field(
        default="24h",
        pattern=r"^[1-9][0-9]{0,5}(s|m|h|d)$",
        description="Requests not started within this (e.g. 30m, 24h, 7d) end as expired.",
    )
    metadata: dict[str, MetadataValue] | None = None
    requests: list[RequestIn]

    @property
    def completion_window_s(self) -> int:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[self.completion_window[-1]]
        return int(self.completion_window[:-1]) * unit


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


class WeightIn(_Model):
    """``PUT /v1/admin/teams/{team}/weight``: the team's fair-share weight from now on."""

    weight: float = Field(ge=0.001, le=1000, allow_inf_nan=False)


class Backlog(BaseModel):
    high: int
    medium: int
    low: int


class TeamStatusOut(BaseModel):
    """One team's fairness state, as ``GET /v1/admin/teams`` shows it."""

    team: str
    weight: float = Field(description="The weight the scheduler uses now.")
    weight_source: Literal["config", "override", "default"] = Field(
        description="config: broker.toml; override: set through the admin API; "
        "default: not in broker.toml any more, drains at weight 1."
    )
    counter: float = Field(description="Virtual token counter: weighted service / weight.")
    backlog: Backlog = Field(description="Queued requests per priority.")
    parked: int = Field(
        default=0,
        description="Queued requests set aside because every model of their chain is behind "
        "an open circuit breaker; they go back to the queue when one lets calls through.",
    )
    queued: int = Field(description="Requests waiting in all: the backlog and the parked.")
    service: float = Field(description="Weighted service received (tokens or micro-dollars).")
    share: float = Field(description="This team's fraction of all service received, 0..1.")
    paused: bool = Field(default=False, description="Its queues are not served until resumed.")
    paused_reason: str | None = Field(default=None, description="Why, while paused.")


class TeamList(BaseModel):
    teams: list[TeamStatusOut]


class PauseIn(_Model):
    """``POST /v1/admin/teams/{team}/pause``: why (shown in the team list and the alert)."""

    reason: NulFree = Field(default="paused by an operator", min_length=1, max_length=500)


class TeamPauseOut(BaseModel):
    """A team's pause state after ``pause`` or ``resume``."""

    team: str
    paused: bool
    reason: str | None = Field(description="Why the team is paused; None when it is not.")
    changed: bool = Field(description="False when it was already in that state.")


class BudgetLimitIn(_Model):
    """``PUT /v1/admin/budgets/{id}/limit``: the budget's limit from now on, in USD."""

    limit_usd: Decimal = Field(
        gt=0,
        le=1_000_000,
        decimal_places=6,
        allow_inf_nan=False,
        description='A decimal string ("12.50") or a number; at most 6 decimal places.',
    )


class BudgetOut(BaseModel):
    """One ``[[budgets]]`` entry in its current window, as ``GET /v1/admin/budgets`` shows it."""

    id: str = Field(description="team[/feature]/window, e.g. product/search/monthly.")
    team: str
    feature: str | None
    window: Literal["daily", "monthly", "custom"]
    window_start: datetime = Field(description="UTC, inclusive.")
    window_end: datetime = Field(description="UTC, exclusive: the limit renews then.")
    limit_micros: int = Field(description="The limit the scheduler enforces now.")
    limit_source: Literal["config", "override"] = Field(
        description="config: broker.toml; override: set through the admin API."
    )
    spent_micros: int
    reserved_micros: int = Field(description="Held for requests dispatched but not yet settled.")
    remaining_micros: int = Field(description="limit − spent − reserved, at least 0.")
    limit_usd: str
    spent_usd: str
    reserved_usd: str
    remaining_usd: str


class BudgetList(BaseModel):
    budgets: list[BudgetOut]


class AlertOut(BaseModel):
    """One alert; kinds add their own details (budget, threshold, spent_micros...)."""

    model_config = ConfigDict(extra="allow")

    type: str
    team: str
    message: str
    at: datetime


class AlertList(BaseModel):
    alerts: list[AlertOut] = Field(description="Newest first.")


class BreakerOut(BaseModel):
    scope: str = Field(description="provider:<name> or model:<name>.")
    state: Literal["closed", "open", "half_open"]
    calls: int = Field(description="Calls in the sliding window.")
    failures: int
    failure_rate: float
    consecutive_failures: int
    opened_at: datetime | None = None
    retry_at: datetime | None = Field(default=None, description="When an open breaker half-opens.")
    transitions: int


class BreakerTransitionOut(BaseModel):
    scope: str
    from_: str = Field(alias="from")
    to: str
    at: datetime
    reason: str

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class BreakerList(BaseModel):
    breakers: list[BreakerOut]
    transitions: list[BreakerTransitionOut] = Field(description="Recent ones, newest first.")


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
