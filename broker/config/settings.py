"""Process settings from the environment (prefix ``BROKER_``), read once at start.

``REDIS_URL`` and ``DATABASE_URL`` are honoured as well as their ``BROKER_`` forms, so the
broker drops into platforms that set those names.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.config.broker_toml import BrokerConfig, load_config

#: The public development base of webhook secrets: never use it in production.
DEV_WEBHOOK_SECRET = "ib-dev-webhook-secret"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="BROKER_", extra="ignore", frozen=True, env_ignore_empty=True
    )

    config_path: Path | None = Field(
        default=None, description="broker.toml; packaged default if unset"
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BROKER_REDIS_URL", "REDIS_URL")
    )
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("BROKER_DATABASE_URL", "DATABASE_URL")
    )
    data_dir: Path = Field(default=Path(".broker"), description="SQLite file, logs, private Redis")
    api_host: str = "127.0.0.1"
    api_port: int = 8140
    simulator_url: str | None = Field(
        default=None, description="Overrides base_url of every simulated provider."
    )
    dispatch_margin: int = Field(default=8, ge=0, description="Tasks queued beyond concurrency.")
    max_batch_size: int = Field(default=50_000, ge=1)
    max_body_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1, description="Largest request body the API reads (413)."
    )
    submissions_per_minute: int = Field(
        default=60, ge=0, description="POST /v1/jobs per minute per API key (429); 0: no limit."
    )
    db_pool_size: int = Field(default=8, ge=1, description="Database connections per process.")
    log_level: str = "INFO"
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text lines, or one JSON object per line (broker.telemetry.logs).",
    )
    redact: bool = Field(
        default=False,
        description="Replace e-mail addresses, phone and card numbers in stored prompts (so "
        "also in what providers receive) and in logs (broker.telemetry.redaction).",
    )
    task_events: bool | None = Field(
        default=None,
        description="Celery task events for Flower's task view. Unset: workers start without "
        "them and Flower turns them on while it runs (they cost about 11% more CPU per request "
        "in bench_spine.py); true: always on; false: never, not even for Flower.",
    )
    flower_basic_auth: str | None = Field(
        default=None, description="Flower's HTTP basic auth, 'user:password'."
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(DEV_WEBHOOK_SECRET),
        description="Base of the per-team webhook secrets of teams without webhook_secret_env "
        "(HMAC of this and the team id). The default is a public development value.",
    )
    public_url: str | None = Field(
        default=None,
        description="The API's base URL as webhook receivers reach it (results_url); "
        "default http://api_host:api_port.",
    )

    @property
    def public_url_or_default(self) -> str:
        return (self.public_url or f"http://{self.api_host}:{self.api_port}").rstrip("/")

    @property
    def database_url_or_default(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @cached_property
    def config(self) -> BrokerConfig:
        config = load_config(self.config_path)
        if self.simulator_url:
            url = self.simulator_url.rstrip("/")
            providers = [
                p.model_copy(update={"base_url": url}) if p.kind == "simulated" else p
                for p in config.providers
            ]
            config = config.with_providers(providers)
        return config
