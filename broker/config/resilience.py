"""``[retries]`` and ``[breakers]`` in broker.toml: how a worker retries a failing provider call
and when a provider (or one of its models) is taken out of rotation.

Retries happen inside one dispatch, with exponential backoff and full jitter, honouring the
provider's ``retry-after`` when it is short; after ``tries`` calls the request goes down its
model's chain (see :mod:`workers.execution`). Breakers are shared by every process through Redis
(:mod:`workers.breakers`): closed → open when the failure rate over ``window_s`` passes
``failure_rate`` (with at least ``min_calls`` calls) or after ``consecutive_failures`` failures in
a row → half-open after ``open_s`` (``probes`` calls may go) → closed after ``probes`` successes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class RetryConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    tries: int = Field(
        default=3, ge=1, le=10, description="Calls per dispatch on a retryable error."
    )
    backoff_s: float = Field(
        default=0.5, gt=0, description="First backoff; doubles per try, with full jitter."
    )
    max_backoff_s: float = Field(default=8.0, gt=0, description="Cap of one backoff.")
    max_retry_after_s: float = Field(
        default=10.0,
        ge=0,
        description="A longer retry-after is not slept through: the request goes down its chain.",
    )


class BreakerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    window_s: int = Field(default=5, ge=1, le=120, description="Sliding window, whole seconds.")
    min_calls: int = Field(default=5, ge=1, description="Calls in the window before it may open.")
    failure_rate: float = Field(default=0.5, gt=0, le=1, description="Share that opens it.")
    consecutive_failures: int = Field(
        default=10, ge=1, description="This many failures in a row open it whatever the window."
    )
    open_s: float = Field(default=5.0, gt=0, description="Open this long, then half-open.")
    probes: int = Field(
        default=2, ge=1, description="Calls let through half-open; as many successes close it."
    )
    unavailable_s: float = Field(
        default=60.0,
        gt=0,
        description="Open this long after an auth failure or exhausted quota.",
    )
