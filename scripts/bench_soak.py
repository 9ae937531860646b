"""Soak: many requests from four teams through the real stack; nothing lost, nothing leaks.

    python scripts/bench_soak.py [--requests 200000] [--batch 5000] [--chart soak_memory.png]
                                 [--database-url URL] [--json]

Starts a private stack (zero-latency simulator, private Redis, SQLite unless --database-url) on
the packaged ``broker.toml`` plus a fourth team, and keeps it busy: the four teams submit
batches of ``--batch`` requests in turn, never more than four batches waiting, until
``--requests`` are in; then it waits for the drain. Every request is distinct and opts out of
the response cache (``cache: {read: false, store: false}``): the cache's entries are meant to
stay in Redis for their TTL, and would hide a leak of the broker's own state.

Every ``--sample-s`` seconds it records each process's resident memory (``/proc``) and Redis's
``used_memory``. It prints and checks:

- nothing lost (every request in a terminal state) and nothing charged twice (one ledger row
  per request at most);
- after warm-up (the first fifth of the run), every process's resident memory within +-15% of
  its level at the end of warm-up (the median of the samples around it);
- Redis ``used_memory`` after the drain back at its level before the first submission (within
  +-15% or 1 MiB, whichever is larger).

The chart (PNG) plots resident memory per process and Redis memory over time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import redis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select

from broker.client import BrokerClient
from broker.config.broker_toml import DEFAULT_CONFIG, hash_api_key
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack
from broker.states import RequestStatus
from broker.store import Database, LedgerEntry, Request

TEAMS = ("product", "content", "platform", "research")
FOURTH_TEAM = f"""
[[teams]]
id = "research"
weight = 1
api_key_sha256 = "{hash_api_key("ib-dev-research")}"
"""
FEATURES = {
    "product": "classification",
    "content": "summarization",
    "platform": "data-extraction",
    "research": "search",
}
TOLERANCE = 0.15
TERMINAL = [s.value for s in RequestStatus if s.is_terminal]


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """Resident memory of every stack process and Redis ``used_memory``, every ``interval``."""

    def __init__(self, stack: Stack, client: redis.Redis, interval: float) -> None:
        super().__init__(daemon=True)
        self.pids = {c.name: c.proc.pid for c in stack.children.values()}
        self.pids["redis"] = stack.redis_server.child.proc.pid
        self.client = client
        self.interval = interval
        self.started = time.monotonic()
        self.samples: list[tuple[float, dict[str, float], float]] = []  # (s, rss MiB, redis MiB)
        self._halt = threading.Event()

    def sample(self) -> None:
        rss = {name: rss_mib(pid) for name, pid in self.pids.items()}
        used = int(self.client.info("memory")["used_memory"]) / 2**20
        self.samples.append(
            (time.monotonic() - self.started, {k: v for k, v in rss.items() if v}, used)
        )

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.sample()

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def batch_of(team: str, start: int, n: int) -> list[dict]:
    return [
        {
            "custom_id": f"{team}-{i}",
            "model": ("gpt-4o-mini", "claude-haiku-4-5")[i % 2],
            "max_tokens": 32,
            "messages": [{"role": "user", "content": f"{team}: ticket {i}, the app crashes."}],
            "cache": {"read": False, "store": False},
        }
        for i in range(start, start + n)
    ]


def drive(api_url: str, total: int, batch: int, console: Console) -> list[str]:
    """Submit ``total`` requests, the teams in turn, at most four batches unfinished."""
    clients = {t: BrokerClient(api_url, f"ib-dev-{t}", timeout=300) for t in TEAMS}
    jobs, waiting, sent = [], [], 0
    try:
        while sent < total or waiting:
            waiting = [j for j in waiting if not j.refresh().done]
            if sent < total and len(waiting) < len(TEAMS):
                team = TEAMS[(sent // batch) % len(TEAMS)]
                n = min(batch, total - sent)
                job = clients[team].submit_batch(batch_of(team, sent, n), feature=FEATURES[team])
                jobs.append(job.id)
                waiting.append(job)
                sent += n
                console.print(f"submitted {sent:,} of {total:,}")
            else:
                time.sleep(0.5)
    finally:
        for client in clients.values():
            client.close()
    console.print()
    return jobs


def tally(db: Database, jobs: list[str]) -> dict[str, int]:
    with db.session() as s:
        total = s.scalar(select(func.count()).where(Request.job_id.in_(jobs)))
        succeeded = s.scalar(
            select(func.count()).where(
                Request.job_id.in_(jobs), Request.status == RequestStatus.SUCCEEDED
            )
        )
        lost = s.scalar(
            select(func.count()).where(Request.job_id.in_(jobs), Request.status.not_in(TERMINAL))
        )
        charged_twice = (
            select(LedgerEntry.request_id)
            .where(LedgerEntry.job_id.in_(jobs))
            .group_by(LedgerEntry.request_id)
            .having(func.count() > 1)
            .subquery()
        )
        double = s.scalar(select(func.count()).select_from(charged_twice))
    return {"requests": total, "succeeded": succeeded, "lost": lost, "double_charged": double}


def drift(samples, warm_until: float) -> dict[str, dict[str, float]]:
    """Per process: its level at the end of warm-up (median of the samples within 10% of the
    run around it) and the largest relative move away from it afterwards."""
    end = samples[-1][0]
    near = [rss for t, rss, _ in samples if abs(t - warm_until) <= 0.1 * end]
    after = [rss for t, rss, _ in samples if t >= warm_until]
    out = {}
    for name in samples[0][1]:
        base = statistics.median(r[name] for r in near if name in r)
        moves = [r[name] / base - 1 for r in after if name in r]
        out[name] = {"warm_mib": base, "max_up": max(moves), "max_down": min(moves)}
    return out


def draw(samples, warm_until: float, path: Path) -> None:
    figure = Figure(figsize=(12, 7), dpi=100)
    canvas = FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    times = [t for t, _, _ in samples]
    for name in samples[0][1]:
        top.plot(times, [rss.get(name, float("nan")) for _, rss, _ in samples], label=name)
    top.axvline(warm_until, color="grey", linestyle="--", linewidth=1, label="end of warm-up")
    top.set_ylabel("resident memory (MiB)")
    top.set_title("Soak: memory over time")
    top.legend(loc="upper left", fontsize=8, ncol=2)
    bottom.plot(times, [used for _, _, used in samples], color="black")
    bottom.set_ylabel("Redis used_memory (MiB)")
    bottom.set_xlabel("seconds since the soak began")
    figure.tight_layout()
    canvas.print_png(str(path))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--sample-s", type=float, default=2.0)
    parser.add_argument("--chart", type=Path, default=Path("soak_memory.png"))
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    console = Console(stderr=args.json)

    with TemporaryDirectory() as tmp:
        config_path = Path(tmp) / "broker.toml"
        config_path.write_text(DEFAULT_CONFIG.read_text() + FOURTH_TEAM)
        settings = Settings(
            data_dir=Path(tmp),
            config_path=config_path,
            api_port=free_port(),
            database_url=args.database_url,
            log_level="WARNING",
        )
        with Stack(settings) as stack:
            client = redis.Redis.from_url(stack.env["BROKER_REDIS_URL"])
            sampler = Sampler(stack, client, args.sample_s)
            sampler.sample()
            redis_before = sampler.samples[-1][2]
            sampler.start()
            started = time.monotonic()
            jobs = drive(stack.api_url, args.requests, args.batch, console)
            elapsed = time.monotonic() - started
            time.sleep(3 * args.sample_s)  # the scheduler's last sweeps after the drain
            sampler.stop()
            redis_after = sampler.samples[-1][2]
            db = Database(settings.database_url_or_default)
            try:
                counts = tally(db, jobs)
            finally:
                db.dispose()
            client.close()

    samples = sampler.samples
    warm_until = samples[-1][0] / 5
    moves = drift(samples, warm_until)
    draw(samples, warm_until, args.chart)
    redis_ok = abs(redis_after - redis_before) <= max(TOLERANCE * redis_before, 1.0)
    memory_ok = all(
        -TOLERANCE <= m["max_down"] and m["max_up"] <= TOLERANCE for m in moves.values()
    )
    counts_ok = counts["lost"] == 0 and counts["double_charged"] == 0
    counts_ok = counts_ok and counts["requests"] == args.requests

    table = Table(title=f"Soak: {args.requests:,} requests, four teams, {elapsed:,.0f} s")
    table.add_column("process")
    table.add_column("after warm-up (MiB)", justify="right")
    table.add_column("largest rise", justify="right")
    table.add_column("largest fall", justify="right")
    for name, m in moves.items():
        table.add_row(
            name, f"{m['warm_mib']:,.1f}", f"{m['max_up']:+.1%}", f"{m['max_down']:+.1%}"
        )
    console.print(table)
    console.print(
        f"requests {counts['requests']:,}, succeeded {counts['succeeded']:,}, lost "
        f"{counts['lost']:,}, charged twice {counts['double_charged']:,}; "
        f"{args.requests / elapsed:,.0f} req/s"
    )
    console.print(
        f"Redis used_memory {redis_before:,.1f} MiB before, {redis_after:,.1f} MiB after the "
        f"drain ({'back' if redis_ok else 'NOT back'} to its level); chart: {args.chart}"
    )
    verdict = counts_ok and memory_ok and redis_ok
    console.print("[bold green]PASS[/]" if verdict else "[bold red]FAIL[/]")
    if args.json:
        print(
            json.dumps(
                {
                    **counts,
                    "elapsed_s": elapsed,
                    "per_s": args.requests / elapsed,
                    "memory": moves,
                    "memory_within_15pct": memory_ok,
                    "redis_mib_before": redis_before,
                    "redis_mib_after": redis_after,
                    "redis_back": redis_ok,
                    "chart": str(args.chart),
                    "passed": verdict,
                },
                sort_keys=True,
            )
        )
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
