"""Knobs of the simulated provider, read from ``BROKER_SIM_*`` at start and replaceable at run time.

One model serves both uses so the environment and ``POST /_sim/config`` accept exactly the same
fields with the same bounds: a chaos test cannot set a knob the CLI could not, and vice versa.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Wire(StrEnum):
    """The two wire formats the simulator speaks on one port."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"


class MalformedKind(StrEnum):
    """Ways a 200 response can be broken, each one a failure real gateways have produced."""

    INVALID_JSON = "invalid_json"  # a Python repr instead of JSON: quotes and None are wrong
    TRUNCATED = "truncated"  # the first half of a valid JSON body
    HTML = "html"  # a proxy error page served as text/html with status 200


class OutageWindow(BaseModel):
    """A span of time during which every matching call fails with ``status``.

    ``start_s`` counts from server start, or from the ``/_sim/config`` call that set the outages,
    so a test can start an outage "now" without knowing how long the server has been up.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    start_s: float = Field(default=0.0, ge=0)
    duration_s: float = Field(gt=0)
    status: int | None = Field(
        default=None, ge=400, le=599, description="None: 503 for OpenAI, 529 for Anthropic."
    )
    wire: Wire | None = Field(default=None, description="Only this wire format; None: both.")
    model: str | None = Field(default=None, description="Only this model; None: every model.")

    def covers(self, elapsed_s: float, wire: Wire, model: str) -> bool:
        if not self.start_s <= elapsed_s < self.start_s + self.duration_s:
            return False
        same_wire = self.wire is None or self.wire is wire
        return same_wire and (self.model is None or self.model == model)


class SimulatorSettings(BaseSettings):
    """Runtime knobs. Environment variables are ``BROKER_SIM_<FIELD>``; lists are JSON."""

    model_config = SettingsConfigDict(env_prefix="BROKER_SIM_", extra="forbid", frozen=True)

    latency_ms: float = Field(default=0.0, ge=0, description="Median latency; 0 answers at once.")
    latency_sigma: float = Field(default=0.5, ge=0, le=5, description="Lognormal spread.")
    stream_chunk_ms: float = Field(
        default=0.0, ge=0, description="Pause between streamed chunks; 0 sends them at once."
    )
    error_rate: float = Field(default=0.0, ge=0, le=1, description="Share of retryable 5xx/529.")
    rpm: int | None = Field(
        default=None, ge=1, description="Requests per rate_window_s (60 s), per wire format."
    )
    tpm: int | None = Field(default=None, ge=1, description="Tokens per 60 s, per wire format.")
    rate_window_s: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="The sliding window rpm and tpm count over (a short one makes a quick storm).",
    )
    quota_exhausted: bool = Field(default=False, description="OpenAI 429 insufficient_quota.")
    outages: list[OutageWindow] = Field(default_factory=list)
    malformed_rate: float = Field(default=0.0, ge=0, le=1, description="Share of broken 200s.")
    malformed_kinds: list[MalformedKind] = Field(
        default_factory=lambda: list(MalformedKind), min_length=1
    )
    seed: int = Field(default=0, description="Seeds the error, latency and malformed picks.")
    api_key: str | None = Field(default=None, description="When set, any other key gets a 401.")
    replay_path: str | None = Field(
        default=None, description="A CSV of recorded answers (workers.simulator.replay)."
    )
    replay_weak_column: str = "mistralai/Mixtral-8x7B-Instruct-v0.1_response"
    replay_strong_column: str = "gpt-4-1106-preview_response"
    replay_strong_models: list[str] = Field(
        default_factory=list, description="Model ids that answer with the strong column."
    )

    def updated(self, changes: dict) -> SimulatorSettings:
        """A validated copy with ``changes`` applied; raises ``pydantic.ValidationError``.

        Every field is passed explicitly and init values outrank the environment, so a runtime
        change is never undone by a ``BROKER_SIM_*`` variable.
        """
        return SimulatorSettings.model_validate({**self.model_dump(), **changes})
