"""The faults: each starts a fresh :class:`~broker.local.chaos.ChaosStack`, submits one batch,
injects its fault mid-batch and tallies the outcome. ``tests/e2e/test_chaos.py`` asserts on
them; ``scripts/chaos_report.py`` prints them as one table.
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

from sqlalchemy import func, select

from broker.local.chaos import ChaosResult, ChaosStack
from broker.store import Request


def provider_outage(
    workdir: Path, database_url: str | None = None, n: int = 2000, outage_s: float = 30.0
) -> ChaosResult:
    """The primary provider fails every call for ``outage_s`` in the middle of the batch."""
    with ChaosStack(workdir, database_url, {"latency_ms": 150, "latency_sigma": 0.3}) as chaos:
        job = chaos.submit(n)
        time.sleep(3.0)
        began = time.time()
        chaos.sim(outages=[{"duration_s": outage_s, "wire": "openai"}])
        done = chaos.wait(job, timeout=outage_s + 240)
        opened, closed = _breaker_times(chaos, "provider:sim-openai", began, began + outage_s)
        if done and closed is None:  # the batch ended first: a little more traffic closes it
            chaos.wait(chaos.submit(20), timeout=60)
            opened, closed = _breaker_times(chaos, "provider:sim-openai", began, began + outage_s)
        tally = chaos.tally(job)
        served = chaos.sim_stats()["responses"]["by_wire_status"]["openai"]
    return ChaosResult(
        f"sim-openai down {outage_s:.0f} s mid-batch",
        tally,
        {
            "breaker opened after (s)": _round(opened, began),
            "breaker closed after recovery (s)": _round(closed, began + outage_s),
            "openai 503s served": served.get("503", 0),
        },
    )


def rate_limit_storm(workdir: Path, database_url: str | None = None, n: int = 300) -> ChaosResult:
    """The simulator allows 10 calls a second per wire format; the broker thinks it may send
    thousands: every burst meets 429s with ``retry-after``."""
    sim = {"rpm": 20, "rate_window_s": 2}
    with ChaosStack(workdir, database_url, sim) as chaos:
        job = chaos.submit(n)
        chaos.wait(job, timeout=180)
        tally = chaos.tally(job)
        stats = chaos.sim_stats()
    return ChaosResult(
        "429 storm (10 calls/s allowed)",
        tally,
        {
            "429s served": stats["responses"]["by_status"].get("429", 0),
            "calls before their retry-after": sum(stats["retry_after"]["early_calls"].values()),
        },
    )


def worker_kills(
    workdir: Path, database_url: str | None = None, n: int = 600, kills: int = 3
) -> ChaosResult:
    """SIGKILL the primary provider's worker process ``kills`` times during the batch, each
    time while it holds messages of several tickets (``tickets_per_message``)."""
    with ChaosStack(workdir, database_url, {"latency_ms": 200, "latency_sigma": 0.2}) as chaos:
        job = chaos.submit(n)
        held: list[int] = []
        for _ in range(kills):
            time.sleep(3.0)
            held += chaos.kill_worker("sim-openai", wait_for_several_s=10.0)
        chaos.wait(job, timeout=240)
        tally = chaos.tally(job)
        with chaos.db.session() as s:
            retried = s.scalar(
                select(func.count()).where(Request.job_id == job, Request.attempts > 1)
            )
    notes = {
        "requests dispatched again": retried,
        "messages held when killed": len(held),
        "of them with several tickets": sum(1 for n in held if n > 1),
        "attempts in them": sum(held),
    }
    return ChaosResult(f"SIGKILL a worker {kills}x", tally, notes)


def redis_restart(workdir: Path, database_url: str | None = None, n: int = 600) -> ChaosResult:
    """Redis stops mid-batch and comes back empty two seconds later."""
    with ChaosStack(workdir, database_url, {"latency_ms": 200, "latency_sigma": 0.2}) as chaos:
        job = chaos.submit(n)
        time.sleep(4.0)
        chaos.restart_redis(down_s=2.0)
        restarted = time.monotonic()
        chaos.wait(job, timeout=240)
        tally = chaos.tally(job)
        answered = chaos.sim_stats()["responses"]["by_status"].get("200", 0)
    return ChaosResult(
        "Redis restarted empty",
        tally,
        {
            "finished after the restart (s)": round(time.monotonic() - restarted, 1),
            "completions the provider served": answered,
        },
    )


def malformed_bodies(workdir: Path, database_url: str | None = None, n: int = 300) -> ChaosResult:
    """A third of the 200s are broken: invalid JSON, truncated, HTML served as a success."""
    with ChaosStack(workdir, database_url, {"malformed_rate": 0.3}) as chaos:
        job = chaos.submit(n)
        chaos.wait(job, timeout=180)
        tally = chaos.tally(job)
        malformed = chaos.sim_stats()["malformed"]
    return ChaosResult(
        "malformed, truncated, HTML 200s (30%)",
        tally,
        {"broken bodies served": sum(malformed.values())},
    )


#: A third provider and a model on it that no outage touches: the team's other work.
_BACKUP_TOML = """
[[providers]]
name = "sim-backup"
kind = "simulated"
wire = "openai"
base_url = "http://127.0.0.1:8765"
concurrency = 6
timeout_s = 2

[[models]]
name = "gemini-2.5-flash"
provider = "sim-backup"
provider_model_id = "gemini-2.5-flash"
input_price = "0.30"
output_price = "2.50"
cached_input_price = "0.03"
context_window = 1048576
max_output = 65536
"""
_MINI_CHAIN = ("gpt-4o-mini", "claude-haiku-4-5", "gpt-4.1-nano")


def chain_outage(
    workdir: Path, database_url: str | None = None, n: int = 300, outage_s: float = 20.0
) -> ChaosResult:
    """Every model of gpt-4o-mini's chain fails for ``outage_s``. The team's requests for it
    wait (parked behind the open breakers) and run once the models recover; the same team's
    requests for a healthy model, submitted behind them, run during the outage."""
    sim = {"latency_ms": 100, "latency_sigma": 0.3}
    with ChaosStack(workdir, database_url, sim, extra_toml=_BACKUP_TOML) as chaos:
        chaos.sim(outages=[{"duration_s": outage_s, "model": m} for m in _MINI_CHAIN])
        began = time.monotonic()
        blocked = chaos.submit(n)
        time.sleep(3.0)  # the chain's breakers open
        healthy = chaos.submit(n, "gemini-2.5-flash")
        chaos.wait(healthy, timeout=outage_s + 120)
        healthy_done = time.monotonic() - began
        chaos.wait(blocked, timeout=outage_s + 240)
        blocked_done = time.monotonic() - began
        tally = chaos.tally(blocked)
        other = chaos.tally(healthy)
    return ChaosResult(
        f"gpt-4o-mini's whole chain down {outage_s:.0f} s",
        tally,
        {
            "healthy-model job succeeded": other.succeeded,
            "healthy-model job lost": other.lost,
            "healthy-model job done after (s)": round(healthy_done, 1),
            "outage ended after (s)": outage_s,
            "chain job done after (s)": round(blocked_done, 1),
        },
    )


SCENARIOS = {
    "outage": provider_outage,
    "429-storm": rate_limit_storm,
    "worker-kills": worker_kills,
    "redis-restart": redis_restart,
    "malformed": malformed_bodies,
    "chain-outage": chain_outage,
}


def _breaker_times(
    chaos: ChaosStack, scope: str, began: float, recovered: float
) -> tuple[float | None, float | None]:
    """When the breaker first opened after ``began``, and first closed after ``recovered``."""
    opened = closed = None
    for t in reversed(chaos.breakers()["transitions"]):  # oldest first
        if t["scope"] != scope:
            continue
        at = datetime.fromisoformat(t["at"]).timestamp()
        if opened is None and t["to"] == "open" and at >= began:
            opened = at
        if closed is None and t["to"] == "closed" and at >= recovered:
            closed = at
    return opened, closed


def _round(at: float | None, since: float) -> float | None:
    return None if at is None else round(at - since, 2)
