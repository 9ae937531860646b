"""A real local stack to inject faults into, and the tally of what became of every request.

:class:`ChaosStack` is a fresh :class:`~broker.local.stack.Stack` (private Redis, the simulator, API,
scheduler, worker pools) on a small configuration (:data:`CHAOS_TOML`), with the handles a fault
needs: the simulator's knobs, killing a worker, restarting Redis. :meth:`ChaosStack.tally` counts
from the database what a job's requests became: succeeded, failed, lost (never reached a
terminal state) and double-charged (more than one ledger row for one request). The scenarios
are in :mod:`broker.local.chaos_scenarios`.
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import func, select

from broker.client import BrokerClient
from broker.config.broker_toml import hash_api_key
from broker.config.settings import Settings
from broker.errors import BrokerError
from broker.local.processes import RedisServer, free_port
from broker.local.stack import Stack
from broker.states import RequestStatus
from broker.store import Database, LedgerEntry, Request
from workers.celery_app import held_by_workers

TEAM_KEY = "ib-chaos"
ADMIN_KEY = "ib-chaos-admin"
_TERMINAL = {
    RequestStatus.SUCCEEDED,
    RequestStatus.FAILED,
    RequestStatus.CANCELLED,
    RequestStatus.EXPIRED,
}

#: Two simulated providers of six calls each, short timeouts and a quick reaper, so faults
#: show within seconds; gpt-4o-mini falls back to claude-haiku-4-5, then gpt-4.1-nano.
CHAOS_TOML = f"""
prices_as_of = 2026-11-01
admin_api_key_sha256 = "{hash_api_key(ADMIN_KEY)}"

[scheduler]
reap_after_s = 10
lease_s = 3

[retries]
tries = 3
backoff_s = 0.2
max_backoff_s = 1.0
max_retry_after_s = 2.0

[[providers]]
name = "sim-openai"
kind = "simulated"
wire = "openai"
base_url = "http://127.0.0.1:8765"
concurrency = 6
timeout_s = 2

[[providers]]
name = "sim-anthropic"
kind = "simulated"
wire = "anthropic"
base_url = "http://127.0.0.1:8765"
concurrency = 6
timeout_s = 2

[[models]]
name = "gpt-4o-mini"
provider = "sim-openai"
provider_model_id = "gpt-4o-mini"
fallbacks = ["claude-haiku-4-5", "gpt-4.1-nano"]
input_price = "0.15"
output_price = "0.60"
cached_input_price = "0.075"
context_window = 128000
max_output = 16384

[[models]]
name = "claude-haiku-4-5"
provider = "sim-anthropic"
provider_model_id = "claude-haiku-4-5"
input_price = "1.00"
output_price = "5.00"
cached_input_price = "0.10"
context_window = 200000
max_output = 64000

[[models]]
name = "gpt-4.1-nano"
provider = "sim-openai"
provider_model_id = "gpt-4.1-nano"
input_price = "0.10"
output_price = "0.40"
cached_input_price = "0.025"
context_window = 1047576
max_output = 32768

[[teams]]
id = "chaos"
api_key_sha256 = "{hash_api_key(TEAM_KEY)}"
"""


@dataclass
class Tally:
    """What became of one job's requests, read from the database."""

    requests: int
    succeeded: int
    failed: int
    lost: int  # not in a terminal state when the run ended
    double_charged: int  # requests with more than one ledger row
    ledger_rows: int = 0
    ledger_attempts: int = 0  # distinct (request, attempt) among them: equal, or one charged twice
    by_provider: dict[str, int] = field(default_factory=dict)  # succeeded, by provider
    errors: dict[str, int] = field(default_factory=dict)  # failed, by error code


@dataclass
class ChaosResult:
    fault: str
    tally: Tally
    notes: dict[str, Any] = field(default_factory=dict)


class ChaosStack:
    """A stack on :data:`CHAOS_TOML` (plus ``extra_toml``, e.g. a ``[webhooks]`` table) with the
    simulator's knobs (``BROKER_SIM_*``) as given."""

    def __init__(
        self,
        workdir: Path,
        database_url: str | None = None,
        sim: dict[str, str] | None = None,
        extra_toml: str = "",
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        config_path = workdir / "broker.toml"
        config_path.write_text(CHAOS_TOML + extra_toml)
        self.settings = Settings(
            config_path=config_path,
            database_url=database_url,
            data_dir=workdir / "data",
            api_port=free_port(),
        )
        env = {f"BROKER_SIM_{k.upper()}": str(v) for k, v in (sim or {}).items()}
        self.stack = Stack(self.settings, extra_env=env)
        self.db: Database | None = None
        self._dead_workers_messages: set[str] = set()  # delivery tags

    def __enter__(self) -> ChaosStack:
        self.stack.start()
        self.db = Database(self.settings.database_url_or_default)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.db is not None:
            self.db.dispose()
        self.stack.stop()

    @property
    def simulator_url(self) -> str:
        return self.stack.env["BROKER_SIMULATOR_URL"]

    def sim(self, **changes: Any) -> None:
        """Change the simulator's knobs now (outages start counting from this call)."""
        httpx.post(f"{self.simulator_url}/_sim/config", json=changes, timeout=5).raise_for_status()

    def sim_stats(self) -> dict[str, Any]:
        return httpx.get(f"{self.simulator_url}/_sim/stats", timeout=5).json()

    def breakers(self) -> dict[str, Any]:
        response = httpx.get(
            f"{self.stack.api_url}/v1/admin/breakers",
            params={"limit": 1000},
            headers={"authorization": f"Bearer {ADMIN_KEY}"},
            timeout=10,
        )
        response.raise_for_status()
        return response.json()

    def submit(self, n: int, model: str = "gpt-4o-mini", **job: Any) -> str:
        """Submit ``n`` small requests for ``model``; ``job`` adds job fields
        (``completion_window``...). Returns the job id."""
        batch = [
            {
                "custom_id": f"c{i}",
                "model": model,
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Classify ticket {i}: printer on fire"}],
            }
            for i in range(n)
        ]
        with BrokerClient(self.stack.api_url, TEAM_KEY, timeout=60) as client:
            return client.submit_batch(batch, feature="chaos", **job).id

    def wait(self, job_id: str, timeout: float) -> bool:
        """Whether the job ended within ``timeout`` seconds (polling the database)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pending(job_id) == 0:
                return True
            self.check_alive()
            time.sleep(0.5)
        return False

    def pending(self, job_id: str) -> int:
        with self.db.session() as s:
            return s.scalar(
                select(func.count())
                .select_from(Request)
                .where(Request.job_id == job_id, Request.status.not_in(_TERMINAL))
            )

    def check_alive(self) -> None:
        dead = self.stack.dead_children()
        if dead:
            names = ", ".join(f"{c.name} (log: {c.log_path})" for c in dead)
            raise BrokerError(f"processes died during the chaos run: {names}")

    def kill_worker(self, provider: str, wait_for_several_s: float = 0.0) -> list[int]:
        """SIGKILL the provider's worker process and start a new one in its place. Returns
        how many attempts each message it held (delivered, not acknowledged) carried. With
        ``wait_for_several_s``, first wait up to that long for it to hold a message of several
        tickets, so the kill lands on one."""
        name = f"worker-{provider}"
        queue = self.settings.config.provider(provider).queue
        with redis.Redis.from_url(self.stack.env["BROKER_REDIS_URL"]) as client:
            deadline = time.monotonic() + wait_for_several_s
            while True:
                held = held_by_workers(client, queue)
                mine = [n for tag, n in held.items() if tag not in self._dead_workers_messages]
                if time.monotonic() >= deadline or any(n > 1 for n in mine):
                    break
                time.sleep(0.01)
            child = self.stack.children.pop(name)
            child.signal(signal.SIGKILL)
        self._dead_workers_messages.update(held)
        child.stop()
        self.stack.add_worker(provider)
        return mine

    def restart_redis(self, down_s: float) -> None:
        """Stop the stack's Redis and start an empty one on the same port ``down_s`` later."""
        server = self.stack.redis_server
        server.stop()
        time.sleep(down_s)
        self.stack.redis_server = RedisServer(self.settings.data_dir / "redis-2", port=server.port)

    def tally(self, job_id: str) -> Tally:
        with self.db.session() as s:
            statuses = dict(
                s.execute(
                    select(Request.status, func.count())
                    .where(Request.job_id == job_id)
                    .group_by(Request.status)
                ).all()
            )
            charged = (
                select(LedgerEntry.request_id)
                .where(LedgerEntry.job_id == job_id)
                .group_by(LedgerEntry.request_id)
                .having(func.count() > 1)
                .subquery()
            )
            double = s.scalar(select(func.count()).select_from(charged))
            attempts = (
                select(LedgerEntry.request_id, LedgerEntry.attempt)
                .where(LedgerEntry.job_id == job_id)
                .distinct()
                .subquery()
            )
            ledger_attempts = s.scalar(select(func.count()).select_from(attempts))
            ledger_rows = s.scalar(select(func.count()).where(LedgerEntry.job_id == job_id))
            by_provider = dict(
                s.execute(
                    select(Request.provider_used, func.count())
                    .where(Request.job_id == job_id, Request.status == RequestStatus.SUCCEEDED)
                    .group_by(Request.provider_used)
                ).all()
            )
            errors = dict(
                s.execute(
                    select(Request.error_code, func.count())
                    .where(Request.job_id == job_id, Request.status == RequestStatus.FAILED)
                    .group_by(Request.error_code)
                ).all()
            )
        return Tally(
            requests=sum(statuses.values()),
            succeeded=statuses.get(RequestStatus.SUCCEEDED, 0),
            failed=statuses.get(RequestStatus.FAILED, 0),
            lost=sum(n for status, n in statuses.items() if status not in _TERMINAL),
            double_charged=double,
            ledger_rows=ledger_rows,
            ledger_attempts=ledger_attempts,
            by_provider=by_provider,
            errors=errors,
        )
