"""``[webhooks]`` in broker.toml: how job webhooks are delivered and retried.

A delivery that fails is tried again after ``first_retry_s``, doubling each time (with jitter,
capped at ``max_retry_s``), until it is ``max_age_s`` old; then it is marked failed. Each POST
waits at most ``timeout_s``. Receivers on private, loopback, link-local, multicast or reserved
addresses are refused unless their host is in ``allow_private_hosts`` (the SSRF guard).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    first_retry_s: float = Field(
        default=10.0, gt=0, description="Wait before the second attempt; doubles per attempt."
    )
    max_retry_s: float = Field(default=3600.0, gt=0, description="Cap of one wait.")
    max_age_s: float = Field(
        default=86400.0, gt=0, description="A delivery not made by then is marked failed."
    )
    timeout_s: float = Field(default=10.0, gt=0, le=120, description="One POST, connect to end.")
    concurrency: int = Field(
        default=8, ge=1, le=256, description="POSTs in flight in one webhooks worker process."
    )
    allow_private_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts (names or IP literals, as written in the URL) that may resolve to "
        "private or loopback addresses, e.g. an internal receiver.",
    )
