"""The whole broker on one machine, as ``inference-broker up`` runs it.

Redis (a private one unless ``REDIS_URL`` is set), the result store (a SQLite file unless
``DATABASE_URL`` is set), the simulator (when a provider is simulated), the API, the scheduler,
one worker pool per provider and the webhooks worker, each a child process logging to
``<data_dir>/logs``; and
Flower on 127.0.0.1 when ``flower_port`` is set (``up`` does not start it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from broker.config.broker_toml import ProviderKind
from broker.config.settings import Settings
from broker.errors import BrokerError
from broker.local.processes import (
    Child,
    RedisServer,
    broker_argv,
    free_port,
    http_ok,
    port_is_free,
    wait_until,
)
from broker.store import Database


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as ``BROKER_*`` variables, so every child runs with the same ones."""
    return {
        f"BROKER_{name.upper()}": value.get_secret_value()
        if isinstance(value, SecretStr)
        else str(value)
        for name, value in settings.model_dump().items()
        if value is not None
    }


@dataclass
class Stack:
    settings: Settings
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Scheduler processes: one leads, the others stand by to take over.
    schedulers: int = 1
    #: Worker processes per provider, each a pool of the provider's concurrency.
    workers_per_provider: int = 1
    #: Run ``inference-broker flower`` on 127.0.0.1 on this port (auth: BROKER_FLOWER_BASIC_AUTH).
    flower_port: int | None = None
    redis_server: RedisServer | None = None
    children: dict[str, Child] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    @property
    def flower_url(self) -> str | None:
        return None if self.flower_port is None else f"http://127.0.0.1:{self.flower_port}"

    @property
    def log_dir(self) -> Path:
        return self.settings.data_dir / "logs"

    def start(self) -> Stack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        settings = self.settings
        env = {**os.environ, **self.extra_env, **settings_env(settings)}
        redis_url = settings.redis_url
        if not redis_url:
            self.redis_server = RedisServer(settings.data_dir / "redis")
            redis_url = self.redis_server.url
        env["BROKER_REDIS_URL"] = redis_url
        env["BROKER_DATABASE_URL"] = settings.database_url_or_default

        db = Database(settings.database_url_or_default)
        db.migrate()
        db.dispose()

        config = settings.config
        simulated = any(p.kind is ProviderKind.SIMULATED for p in config.providers)
        if simulated and not settings.simulator_url:
            port = free_port()
            self._spawn("simulator", env, "simulate", "--port", str(port))
            env["BROKER_SIMULATOR_URL"] = f"http://127.0.0.1:{port}"
            self._wait_http("simulator", f"http://127.0.0.1:{port}/healthz")

        if not port_is_free(settings.api_port, settings.api_host):
            raise BrokerError(
                f"port {settings.api_port} is taken: stop what uses it or set BROKER_API_PORT"
            )
        if self.flower_port is not None and not port_is_free(self.flower_port):
            raise BrokerError(f"port {self.flower_port} is taken: pick another flower_port")
        self.env = env
        self._spawn("api", env, "api")
        for i in range(self.schedulers):
            self._spawn(_numbered("scheduler", i), env, "scheduler")
        for provider in config.providers:
            for i in range(self.workers_per_provider):
                name = _numbered(f"worker-{provider.name}", i)
                self._spawn(name, env, "worker", "--provider", provider.name)
        self._spawn("webhooks", env, "webhooks")
        if self.flower_port is not None:
            self._spawn("flower", env, "flower", "--port", str(self.flower_port))
        self._wait_http("api", f"{self.api_url}/healthz")
        if self.flower_url:  # /healthcheck answers without auth
            self._wait_http("flower", f"{self.flower_url}/healthcheck")

    def add_worker(self, provider: str) -> Child:
        """One more worker process for ``provider`` (e.g. to replace one a test killed)."""
        n = sum(1 for name in self.children if name.startswith(f"worker-{provider}"))
        return self._spawn(
            _numbered(f"worker-{provider}", n), self.env, "worker", "--provider", provider
        )

    def _spawn(self, name: str, env: dict[str, str], *args: str) -> Child:
        child = Child(name, broker_argv(*args), env, self.log_dir / f"{name}.log")
        self.children[name] = child
        return child

    def _wait_http(self, name: str, url: str, timeout: float = 30) -> None:
        wait_until(
            http_ok(url),
            timeout,
            f"{name} (log: {self.children[name].log_path})",
            self.children[name].proc,
        )

    def dead_children(self) -> list[Child]:
        return [child for child in self.children.values() if not child.alive]

    def stop(self) -> None:
        for child in reversed(list(self.children.values())):
            child.stop()
        self.children.clear()
        if self.redis_server:
            self.redis_server.stop()
            self.redis_server = None

    def __enter__(self) -> Stack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _numbered(name: str, i: int) -> str:
    """``scheduler``, ``scheduler-2``, ...: the first keeps the plain name."""
    return name if i == 0 else f"{name}-{i + 1}"
