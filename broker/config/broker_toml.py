"""``broker.toml``: providers, the model catalog and teams, validated once at start.

Any problem fails loudly with the file, the key and the reason, e.g. ``broker.toml:
models[2].provider: unknown provider 'sim-gemini' (known: sim-openai, sim-anthropic)``.
"""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from broker.config.budgets import BudgetConfig, BudgetPolicy
from broker.config.cache import CacheConfig
from broker.config.resilience import BreakerConfig, RetryConfig
from broker.config.routes import RouteConfig
from broker.config.webhooks import WebhookConfig
from broker.errors import ConfigError, field_path

DEFAULT_CONFIG = Path(__file__).parent / "defaults" / "broker.toml"


class ProviderKind(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    SIMULATED = "simulated"


WireFormat = Literal["openai", "anthropic"]
ModelKind = Literal["chat", "embedding"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ProviderConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    kind: ProviderKind
    wire: WireFormat | None = Field(
        default=None, description="Wire format of a simulated provider: openai or anthropic."
    )
    base_url: str
    api_key_env: str | None = Field(
        default=None, description="Name of the env var holding the key."
    )
    concurrency: int = Field(default=64, ge=1, le=4096, description="Calls in flight per pool.")
    tickets_per_message: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Most requests the scheduler packs into one Celery message to this pool.",
    )
    rpm: int | None = Field(default=None, ge=1, description="Requests per minute, all pools.")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute, all pools.")
    burst_s: float = Field(
        default=2.0, gt=0, le=30, description="Seconds of the rate limits that may go at once."
    )
    timeout_s: float = Field(default=60.0, gt=0)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def wire_format(self) -> WireFormat:
        if self.kind is ProviderKind.SIMULATED:
            return self.wire or "openai"
        return self.kind.value  # type: ignore[return-value]

    @property
    def queue(self) -> str:
        """The Celery queue this provider's worker pool consumes."""
        return f"provider.{self.name}"


class ModelConfig(_Strict):
    name: str
    provider: str
    provider_model_id: str
    input_price: Decimal = Field(ge=0, description="USD per 1M input tokens.")
    output_price: Decimal = Field(ge=0, description="USD per 1M output tokens.")
    cached_input_price: Decimal = Field(ge=0, description="USD per 1M cached input tokens.")
    context_window: int = Field(gt=0)
    max_output: int = Field(
        default=0, ge=0, description="Most output tokens of one answer (a chat model needs it)."
    )
    kind: ModelKind = Field(
        default="chat",
        description="chat (chat completions and messages) or embedding (/v1/embeddings).",
    )
    tier: Literal["small", "medium", "large"] = "medium"
    rpm: int | None = Field(default=None, ge=1, description="Per-model requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Per-model tokens per minute.")
    fallbacks: list[str] = Field(
        default_factory=list, description="Models to try next, in order (the model's chain)."
    )

    @property
    def chain(self) -> list[str]:
        """This model, then its fallbacks."""
        return [self.name, *self.fallbacks]

    @model_validator(mode="after")
    def _output_limit(self) -> ModelConfig:
        if self.kind == "chat" and self.max_output == 0:
            raise ValueError("max_output: required for a chat model (a positive integer)")
        return self


def hash_api_key(api_key: str) -> str:
    """What ``api_key_sha256`` holds: keys are compared by hash, never stored in plain."""
    return hashlib.sha256(api_key.encode()).hexdigest()


class FeatureLimits(_Strict):
    """Runaway guard for one feature of a team: requests and tokens per minute."""

    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)


class TeamConfig(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    weight: float = Field(default=1.0, ge=0.001, le=1000)
    allow_fallback: bool = Field(
        default=False,
        description="A request whose model's provider is full may take the next model in its "
        "chain.",
    )
    api_key_sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 hex of the key.")
    budget_policy: BudgetPolicy = Field(
        default="hold",
        description="When a request does not fit a budget: reject it, hold it until it fits, "
        "or downgrade it to the next cheaper model in its chain that fits.",
    )
    trace_limit_usd: Decimal | None = Field(
        default=None, gt=0, description="Ceiling per trace_id (e.g. one agent run)."
    )
    alert_webhook: str | None = Field(default=None, pattern=r"^https?://")
    webhook_secret_env: str | None = Field(
        default=None,
        description="Name of the env var holding the secret job webhooks are signed with; "
        "unset: a secret derived from BROKER_WEBHOOK_SECRET and the team id.",
    )
    rpm: int | None = Field(default=None, ge=1, description="Runaway guard: requests per minute.")
    tpm: int | None = Field(default=None, ge=1, description="Runaway guard: tokens per minute.")
    feature_limits: dict[str, FeatureLimits] = Field(default_factory=dict)
    velocity_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="Pause the team when it spends this share of its daily budget within "
        "velocity_window_s (spend-velocity breaker).",
    )
    velocity_window_s: float = Field(default=600.0, gt=0)


class SchedulerConfig(_Strict):
    """``[scheduler]``: how service is measured for fair queueing, aging and leadership."""

    service: Literal["tokens", "cost"] = Field(
        default="tokens",
        description="tokens: input × input_weight + output × output_weight; cost: micro-dollars.",
    )
    input_weight: float = Field(default=1.0, ge=0)
    output_weight: float = Field(default=2.0, ge=0)
    max_wait_s: float = Field(
        default=300.0,
        gt=0,
        description="A request waiting longer goes before fresher higher-priority work.",
    )
    lease_s: float = Field(default=3.0, ge=1, le=60, description="Leader lease; takeover time.")
    reap_after_s: float | None = Field(
        default=None,
        gt=0,
        description="An attempt dispatched this long ago and not finished died with its worker; "
        "default: the longest an attempt can take (every try timing out) plus 30 s.",
    )
    max_attempts: int = Field(
        default=5,
        ge=1,
        description="Dispatches that may fail (a dead worker, a provider failing every try) "
        "before the request fails; rate limiting and open breakers do not count.",
    )


@dataclass(frozen=True, slots=True)
class _Index:
    """A :class:`BrokerConfig`'s entries by name."""

    providers: dict[str, ProviderConfig]
    models: dict[str, ModelConfig]
    teams: dict[str, TeamConfig]
    teams_by_key: dict[str, TeamConfig]
    routes: dict[str, RouteConfig]


class BrokerConfig(_Strict):
    prices_as_of: date
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    retries: RetryConfig = Field(default_factory=RetryConfig)
    breakers: BreakerConfig = Field(default_factory=BreakerConfig)
    webhooks: WebhookConfig = Field(default_factory=WebhookConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    providers: list[ProviderConfig] = Field(min_length=1)
    models: list[ModelConfig] = Field(min_length=1)
    teams: list[TeamConfig] = Field(default_factory=list)
    budgets: list[BudgetConfig] = Field(default_factory=list)
    routes: list[RouteConfig] = Field(default_factory=list)
    budget_alert_thresholds: list[float] = Field(
        default_factory=lambda: [0.5, 0.8, 1.0], description="Shares of a limit that alert."
    )
    admin_api_key_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 hex of the operators' key for /v1/admin; unset: admin API disabled.",
    )
    metrics_api_key_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="sha256 hex of the key Prometheus scrapes /metrics with: every series, and "
        "nothing else (the admin key sees them too; a team's key only its own team's).",
    )

    @cached_property
    def _by_name(self) -> _Index:
        # A cached property, not pydantic private attributes: each lookup of those cost
        # microseconds (pydantic's __getattr__), paid several times per request on the hot path.
        return _Index(
            providers={p.name: p for p in self.providers},
            models={m.name: m for m in self.models},
            teams={t.id: t for t in self.teams},
            teams_by_key={t.api_key_sha256: t for t in self.teams},
            routes={r.name: r for r in self.routes},
        )

    def provider(self, name: str) -> ProviderConfig:
        return self._by_name.providers[name]

    def model(self, name: str) -> ModelConfig:
        return self._by_name.models[name]

    def has_model(self, name: str) -> bool:
        return name in self._by_name.models

    def model_names(self, kind: ModelKind | None = None) -> list[str]:
        """The catalog's model names (only those of ``kind``, when given), sorted."""
        return sorted(n for n, m in self._by_name.models.items() if kind is None or m.kind == kind)

    def wrong_kind(self, model: str, kind: ModelKind) -> str | None:
        """Why catalog ``model`` cannot serve a ``kind`` request; None when it can."""
        found = self._by_name.models[model].kind
        if found == kind:
            return None
        allowed = ", ".join(self.model_names(kind)) or "none configured"
        return (
            f"{model!r} is a model for {found} requests, not {kind} ones; {kind} models: {allowed}"
        )

    def route(self, name: str) -> RouteConfig | None:
        """The route (virtual model) of that name, or None."""
        return self._by_name.routes.get(name)

    def route_names(self) -> list[str]:
        return sorted(self._by_name.routes)

    def default_route(self, team: str, feature: str) -> RouteConfig | None:
        """The route a request without a model takes: the most specific ``default_for``."""
        best: tuple[int, RouteConfig] | None = None
        for route in self.routes:
            for target in route.default_for:
                if target.matches(team, feature) and (best is None or target.specificity > best[0]):
                    best = (target.specificity, route)
        return best[1] if best else None

    def team(self, team_id: str) -> TeamConfig:
        return self._by_name.teams[team_id]

    def has_team(self, team_id: str) -> bool:
        return team_id in self._by_name.teams

    def budgets_for(self, team: str, feature: str) -> list[BudgetConfig]:
        """Every budget a request of ``team`` for ``feature`` counts against."""
        return [b for b in self.budgets if b.covers(team, feature)]

    def team_by_key_hash(self, key_hash: str) -> TeamConfig | None:
        return self._by_name.teams_by_key.get(key_hash)

    def longest_attempt_s(self, provider: str | None = None) -> float:
        """The longest one attempt can take: every try timing out, with the longest waits
        between them (of ``provider``, or of the slowest provider)."""
        timeout = (
            self.provider(provider).timeout_s
            if provider is not None
            else max(p.timeout_s for p in self.providers)
        )
        retries = self.retries
        wait = max(retries.max_backoff_s, retries.max_retry_after_s)
        return retries.tries * timeout + (retries.tries - 1) * wait

    def provider_for_model(self, model: str) -> ProviderConfig:
        return self._by_name.providers[self._by_name.models[model].provider]

    def with_providers(self, providers: list[ProviderConfig]) -> BrokerConfig:
        """A copy with ``providers`` replaced (e.g. simulated ones pointed at a test server)."""
        return BrokerConfig.model_validate({**self.model_dump(), "providers": providers})


def _check_references(config: BrokerConfig, source: str) -> None:
    def unique(kind: str, names: list[str], key: str) -> None:
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name in seen:
                raise ConfigError(source, f"{kind}[{i}].{key}", f"duplicate {key} {name!r}")
            seen.add(name)

    unique("providers", [p.name for p in config.providers], "name")
    unique("models", [m.name for m in config.models], "name")
    unique("teams", [t.id for t in config.teams], "id")
    unique("teams", [t.api_key_sha256 for t in config.teams], "api_key_sha256")
    for key, what in (("admin_api_key_sha256", "admin"), ("metrics_api_key_sha256", "metrics")):
        operators = getattr(config, key)
        for i, team in enumerate(config.teams):
            if operators is not None and team.api_key_sha256 == operators:
                # One key would be both a team's and the operators': refuse rather than guess.
                raise ConfigError(
                    source,
                    key,
                    f"is also teams[{i}].api_key_sha256 (team {team.id!r}); the {what} key "
                    "must differ",
                )
    known = sorted(p.name for p in config.providers)
    for i, model in enumerate(config.models):
        if model.provider not in known:
            raise ConfigError(
                source,
                f"models[{i}].provider",
                f"unknown provider {model.provider!r} (known: {', '.join(known)})",
            )
    teams = {t.id for t in config.teams}
    for i, budget in enumerate(config.budgets):
        if budget.team not in teams:
            raise ConfigError(source, f"budgets[{i}].team", f"unknown team {budget.team!r}")
    unique("budgets", [b.id for b in config.budgets], "id")
    models = {m.name for m in config.models}
    for i, model in enumerate(config.models):
        for j, fallback in enumerate(model.fallbacks):
            if fallback not in models or fallback == model.name:
                raise ConfigError(
                    source,
                    f"models[{i}].fallbacks[{j}]",
                    f"{fallback!r} is not another model in the catalog",
                )
            if config.model(fallback).kind != model.kind:
                raise ConfigError(
                    source,
                    f"models[{i}].fallbacks[{j}]",
                    f"{fallback!r} serves {config.model(fallback).kind} requests, "
                    f"{model.name!r} {model.kind} ones: a chain holds models of one kind",
                )
        if model.kind == "embedding" and config.provider(model.provider).wire_format != "openai":
            raise ConfigError(
                source,
                f"models[{i}].kind",
                f"embedding models need a provider speaking the openai wire format "
                f"({model.provider!r} does not)",
            )
    unique("routes", [r.name for r in config.routes], "name")
    for i, route in enumerate(config.routes):
        if route.name in models:
            raise ConfigError(source, f"routes[{i}].name", f"{route.name!r} is a model's name")
        for j, tier in enumerate(route.tiers):
            if tier not in models:
                raise ConfigError(
                    source, f"routes[{i}].tiers[{j}]", f"{tier!r} is not a model in the catalog"
                )
            if config.model(tier).kind != "chat":
                raise ConfigError(
                    source, f"routes[{i}].tiers[{j}]", f"{tier!r} is not a chat model"
                )
        judge = route.cascade.judge if route.cascade else None
        if judge is not None and (judge not in models or config.model(judge).kind != "chat"):
            raise ConfigError(
                source,
                f"routes[{i}].cascade.judge",
                f"{judge!r} is not a chat model in the catalog",
            )
    for i, provider in enumerate(config.providers):
        if provider.kind is ProviderKind.SIMULATED and provider.wire is None:
            raise ConfigError(source, f"providers[{i}].wire", "a simulated provider needs wire")
        if provider.kind is not ProviderKind.SIMULATED and not provider.api_key_env:
            raise ConfigError(
                source, f"providers[{i}].api_key_env", "a real provider needs api_key_env"
            )


def parse_config(data: dict, source: str = "<config>") -> BrokerConfig:
    try:
        config = BrokerConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(source, field_path(first["loc"]) or "(top level)", first["msg"]) from exc
    _check_references(config, source)
    return config


def load_config(path: Path | str | None = None) -> BrokerConfig:
    """Read and validate a ``broker.toml``; the packaged default when ``path`` is None."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(str(path), "(file)", "no such file") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "(syntax)", str(exc)) from exc
    return parse_config(data, str(path))
