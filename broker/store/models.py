"""ORM tables. Money is integer micro-dollars; times are timezone-aware UTC.

Every change here needs an Alembic revision in ``migrations/versions``; a test compares the
migrated schema with these models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """``DateTime(timezone=True)`` that always reads back aware UTC: SQLite stores no offset,
    so its naive values (written as UTC) get it back; PostgreSQL's come back aware already."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(64), index=True)
    feature: Mapped[str] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    webhook_url: Mapped[str | None] = mapped_column(Text)
    webhook_events: Mapped[list[str] | None] = mapped_column(
        JSON, doc="Events sent to webhook_url; None means job.finished only."
    )
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    n_total: Mapped[int] = mapped_column(Integer)
    n_succeeded: Mapped[int] = mapped_column(Integer, default=0)
    n_failed: Mapped[int] = mapped_column(Integer, default=0)
    n_cancelled: Mapped[int] = mapped_column(Integer, default=0)
    n_expired: Mapped[int] = mapped_column(Integer, default=0)
    input_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    output_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    n_cache_hits: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    cost_avoided_micros: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="What its cache hits' answers had cost."
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancel_requested_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None] = mapped_column(
        doc="End of the completion window: requests still queued then end as expired."
    )
    surface: Mapped[str | None] = mapped_column(
        String(16), doc="openai or anthropic: created as an SDK batch; None: through /v1/jobs."
    )
    surface_meta: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="What that surface returns and we do not keep elsewhere (endpoint, file ids...)."
    )

    __table_args__ = (
        Index("ix_jobs_team_created", "team_id", "created_at"),
        Index("ix_jobs_status_expires", "status", "expires_at"),
    )

    @property
    def n_done(self) -> int:
        return self.n_succeeded + self.n_failed + self.n_cancelled + self.n_expired


class Request(Base):
    __tablename__ = "requests"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, doc="Position in the submitted batch.")
    team_id: Mapped[str] = mapped_column(String(64))
    feature: Mapped[str] = mapped_column(String(64))
    custom_id: Mapped[str] = mapped_column(String(256))
    payload: Mapped[dict[str, Any]] = mapped_column(
        JSON, doc="messages, max_tokens, temperature, the sampling parameters set; or input"
    )
    model: Mapped[str] = mapped_column(
        String(128), doc="The model asked for, or the tier its route chose."
    )
    route: Mapped[str | None] = mapped_column(
        String(64), doc="The route (virtual model) asked for."
    )
    route_decision: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="How the route chose its tier: tier, model, layer, score, reason."
    )
    trace_id: Mapped[str | None] = mapped_column(
        String(128), doc="Groups requests of one agent run under a per-trace spend ceiling."
    )
    streamed: Mapped[bool] = mapped_column(
        Boolean,
        server_default=false(),
        doc="Its caller reads the answer as it is written: the worker publishes the deltas.",
    )
    priority: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0, doc="Dispatches so far.")
    chain_index: Mapped[int] = mapped_column(
        Integer, default=0, doc="Where in its model's chain the next dispatch starts."
    )
    failures: Mapped[int] = mapped_column(
        Integer, default=0, doc="Dispatches that failed (every try) or died with their worker."
    )
    model_used: Mapped[str | None] = mapped_column(String(128))
    provider_used: Mapped[str | None] = mapped_column(String(64))
    output: Mapped[str | None] = mapped_column(Text)
    finish_reason: Mapped[str | None] = mapped_column(String(32))
    stop_sequence: Mapped[str | None] = mapped_column(
        String(1000), doc="The stop sequence that ended the answer, when the provider said."
    )
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    metadata_: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    cache: Mapped[str | None] = mapped_column(
        String(96), doc="Response cache token <key>/<ttl_s>/<rw|w>; None: not cached."
    )
    cache_hit: Mapped[str | None] = mapped_column(
        String(16), doc="Answered from the cache: exact, semantic or single_flight."
    )
    cache_source_id: Mapped[str | None] = mapped_column(
        String(40), doc="The request whose answer a hit reused."
    )
    cost_avoided_micros: Mapped[int | None] = mapped_column(
        BigInteger, doc="A hit: what the reused answer had cost (charged: 0)."
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    __table_args__ = (
        UniqueConstraint("job_id", "seq", name="uq_requests_job_seq"),
        Index("ix_requests_job_status", "job_id", "status"),
        Index("ix_requests_status_dispatched", "status", "dispatched_at"),
        # The routes report, /metrics' routed counters and the chart's routing panel read the
        # routed requests that succeeded in a window of finished_at: only routed rows are kept.
        Index(
            "ix_requests_routed_finished",
            "status",
            "finished_at",
            sqlite_where=text("route IS NOT NULL"),
            postgresql_where=text("route IS NOT NULL"),
        ),
    )


class StoredFile(Base):
    """A file uploaded through the OpenAI Files API (``purpose=batch``). The bytes live on disk
    (:mod:`broker.dropin.files`), named by ``id``; the row is what the API lists."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(64))
    purpose: Mapped[str] = mapped_column(String(32))
    filename: Mapped[str] = mapped_column(String(256))
    bytes: Mapped[int] = mapped_column(BigInteger)
    lines: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None]

    __table_args__ = (Index("ix_files_team_created", "team_id", "created_at"),)


class LedgerEntry(Base):
    """One row per charged provider attempt, and one per cache hit (attempt 0, charged 0, with
    the cost it avoided); the record budgets are rebuilt from and every report reads."""

    __tablename__ = "cost_ledger"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    team_id: Mapped[str] = mapped_column(String(64))
    feature: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(64))
    input_tokens: Mapped[int] = mapped_column(Integer)
    cached_input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    cache_savings_micros: Mapped[int] = mapped_column(
        BigInteger, default=0, doc="What the cached input tokens would have cost at full price."
    )
    cache_hit: Mapped[str | None] = mapped_column(
        String(16), doc="A response cache hit: exact, semantic or single_flight."
    )
    cost_avoided_micros: Mapped[int] = mapped_column(
        BigInteger, default=0, server_default="0", doc="A hit: what the reused answer had cost."
    )
    trace_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("request_id", "attempt", name="uq_ledger_attempt"),
        Index("ix_ledger_team_created", "team_id", "created_at"),
    )


class ProviderCall(Base):
    """One call to a provider for a request: what it was, how long it took, how it ended.

    A dispatch (``attempt``) makes one call, or several when it retries; a request that falls
    back to other models has calls on each. Unique per (request, attempt, try): a redelivered
    task cannot record a call twice.
    """

    __tablename__ = "provider_calls"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("requests.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    try_: Mapped[int] = mapped_column("try", Integer)
    model: Mapped[str] = mapped_column(String(128))
    provider: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(
        String(64), doc="succeeded, or the error code (rate_limited, provider_retryable, ...)."
    )
    error: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int] = mapped_column(Integer)
    cost_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("request_id", "attempt", "try", name="uq_provider_calls_try"),
    )


class WebhookDelivery(Base):
    """One webhook event for one URL: the outbox row written in the transaction that ended the
    job (or request), then sent and retried by the webhooks worker until delivered or too old.
    ``id`` is the delivery id receivers deduplicate on; it stays the same on every attempt."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    team_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(32), doc="job.finished or request.finished.")
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, doc="The event's data object.")
    status: Mapped[str] = mapped_column(String(16), doc="pending, delivered or failed.")
    attempts: Mapped[int] = mapped_column(Integer, default=0, doc="Attempts started so far.")
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        doc="When the outbox sends it next (pushed on while an attempt is in flight)."
    )
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None]

    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_job", "job_id", "created_at"),
    )


class WebhookAttempt(Base):
    """One POST of a delivery: its answer's status code, or why there was none."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("delivery_id", "attempt", name="uq_webhook_attempts_attempt"),
    )


class TeamSetting(Base):
    """Run-time overrides an operator set for a team (its fair-share weight), over broker.toml."""

    __tablename__ = "team_settings"

    team_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    weight: Mapped[float | None] = mapped_column(Float)
    paused_reason: Mapped[str | None] = mapped_column(
        Text, doc="Set while the team's queues are paused (spend-velocity breaker, operator)."
    )
    paused_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class BudgetLimit(Base):
    """An operator's run-time override of a budget's limit from broker.toml."""

    __tablename__ = "budget_limits"

    budget_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    limit_micros: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class TeamApiKey(Base):
    """A team's API key made at run time (``/v1/admin/teams/{team}/keys``), beside the keys in
    broker.toml. Only its sha256 and its first characters are kept: the key was shown once."""

    __tablename__ = "team_api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    team_id: Mapped[str] = mapped_column(String(64))
    prefix: Mapped[str] = mapped_column(String(16), doc="The key's first characters, to tell it.")
    sha256: Mapped[str] = mapped_column(String(64), doc="sha256 hex of the key.")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None] = mapped_column(
        doc="When it last authenticated a request, to within a minute."
    )

    __table_args__ = (
        UniqueConstraint("sha256", name="uq_team_api_keys_sha256"),
        Index("ix_team_api_keys_team", "team_id", "created_at"),
    )
