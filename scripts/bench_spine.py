"""Spine benchmark: submit rate, end-to-end throughput, and bare Celery as the baseline.

    python scripts/bench_spine.py [--requests 10000] [--rounds 3] [--database-url URL] [--json]

Starts a private stack (zero-latency simulator, private Redis, SQLite unless --database-url)
and, against the same Redis, two bare Celery worker processes with the same pool settings as
the provider pools (threads, the providers' concurrency, acks late, prefetch 1). Each round:

- submit: one batch of N requests through the API (rows/s: validation, bulk insert, queueing);
- end to end: from the submission returning to the job completing (requests/s: scheduler,
  Celery, provider HTTP call, result and ledger writes);
- baseline, round trip: N no-op tasks over the same two queues with their results returned
  through a Redis result backend, from the first send to the last result read (tasks/s);
- baseline, one way: N no-op tasks without results, from the first send to the last task
  finished (each does one Redis INCR so its completion can be observed) — the cheaper and
  stricter comparison;
- the full dispatch path: decisions/s of the production scheduler round with its dispatcher
  (journal, database UPDATE, slots and rate limits, Celery messages of several tickets) over
  ``--dispatch`` requests queued in a fresh SQLite database, 2 providers x 256 slots, no workers
  (``scripts/bench_scheduler.py`` describes it), beside the scheduler round alone;
- the lever off, beside it: a second stack (SQLite) whose providers take one ticket per Celery
  message (``tickets_per_message = 1``), run in each round right after the first
  (``--no-single`` skips it);
- a slow provider, after the rounds: a second stack whose simulator answers every call after
  ``--slow-latency-s`` (2 s), both providers at ``--slow-concurrency`` slots (1,000), one worker
  process each; ``--slow-requests`` (20,000) complete in how long, against the time the
  configured concurrency allows (requests / (2 x slots) x latency; target within 1.1x), and the
  most slots seen taken at once (0 skips it).

Rounds alternate between broker and baselines; medians and the ratios are printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import redis
from celery.result import ResultSet
from rich.console import Console
from rich.table import Table

from bench_scheduler import config_with_concurrency, dispatcher_round

from broker import redis_keys
from broker.client import BrokerClient
from broker.config.broker_toml import DEFAULT_CONFIG, load_config
from broker.config.settings import Settings
from broker.local.processes import Child, free_port, wait_until
from broker.local.stack import Stack
from workers.celery_app import create_celery_app

NOOP = "bench.noop"
NOOP_RESULT = "bench.noop_result"
DONE_KEY = "bench:done"


def baseline_app(settings: Settings):
    """Celery as the broker configures it (acks late, the visibility timeout), on kombu's own
    Redis transport: bare Celery, not the broker's client-reusing one (workers/transport.py)."""
    app = create_celery_app(settings, kombu_transport=True)
    app.conf.result_backend = settings.redis_url
    return app


def baseline_worker(queue: str, concurrency: int) -> None:
    """Entry point of a baseline worker process (``--baseline-worker QUEUE``)."""
    settings = Settings()
    app = baseline_app(settings)
    client = redis.Redis.from_url(settings.redis_url)

    @app.task(name=NOOP)
    def noop() -> None:
        client.incr(DONE_KEY)

    @app.task(name=NOOP_RESULT, ignore_result=False)
    def noop_result() -> None:
        return None

    app.worker_main(
        [
            "worker",
            f"--queues={queue}",
            "--pool=threads",
            f"--concurrency={concurrency}",
            f"--hostname=bench-{queue}@%h",
            "--loglevel=WARNING",
            "--without-mingle",
            "--without-gossip",
        ]
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU milliseconds per item spent by named processes (and this one) during a measurement."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.totals: dict[str, list[float]] = {name: [] for name in [*pids, "bench client"]}

    def measure(self, n: int, run):
        before = {name: cpu_seconds(pid) for name, pid in self.pids.items()}
        own = time.process_time()
        result = run()
        for name, pid in self.pids.items():
            self.totals[name].append((cpu_seconds(pid) - before[name]) * 1000 / n)
        self.totals["bench client"].append((time.process_time() - own) * 1000 / n)
        return result

    def medians(self) -> dict[str, float]:
        return {name: statistics.median(v) for name, v in self.totals.items() if v}


def run_round_trip_baseline(settings: Settings, queues: list[str], n: int) -> float:
    app = baseline_app(settings)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        results = [
            app.send_task(
                NOOP_RESULT, queue=queues[i % len(queues)], producer=producer, ignore_result=False
            )
            for i in range(n)
        ]
    ResultSet(results, app=app).join_native(timeout=600)
    return n / (time.perf_counter() - started)


def run_baseline(settings: Settings, queues: list[str], n: int) -> float:
    app = baseline_app(settings)
    client = redis.Redis.from_url(settings.redis_url)
    client.set(DONE_KEY, 0)
    started = time.perf_counter()
    with app.producer_or_acquire() as producer:
        for i in range(n):
            app.send_task(NOOP, queue=queues[i % len(queues)], producer=producer)
    while int(client.get(DONE_KEY)) < n:
        time.sleep(0.005)
    return n / (time.perf_counter() - started)


def run_broker(api_url: str, n: int) -> tuple[float, float]:
    """(submit rows/s, end-to-end requests/s) of one batch of ``n``. Every prompt is new (a
    fresh tag per call), so none is answered from the response cache: the spine is measured."""
    tag = uuid.uuid4().hex[:8]
    requests = [
        {
            "custom_id": f"r{i}",
            "model": ("gpt-4o-mini", "claude-haiku-4-5")[i % 2],
            "max_tokens": 64,
            "messages": [
                {"role": "user", "content": f"[{tag}] Classify ticket {i}: the app crashes."}
            ],
        }
        for i in range(n)
    ]
    with BrokerClient(api_url, "ib-dev-product", timeout=300) as client:
        started = time.perf_counter()
        job = client.submit_batch(requests, feature="classification")
        submitted = time.perf_counter()
        job.wait(timeout=1800, poll_interval=0.2)
        finished = time.perf_counter()
    assert job.counts.succeeded == n, f"{job.counts.failed} requests failed"
    return n / (submitted - started), n / (finished - submitted)


def single_ticket_config(tmp: Path) -> Path:
    """The packaged ``broker.toml`` with one ticket per Celery message for every provider."""
    text, count = re.subn(
        r"(?m)^(concurrency\s*=\s*\d+.*)$",
        r"\1\ntickets_per_message = 1",
        DEFAULT_CONFIG.read_text(),
    )
    path = tmp / "single.toml"
    path.write_text(text)
    assert all(p.tickets_per_message == 1 for p in load_config(path).providers) and count
    return path


def run_slow_provider(latency_s: float, concurrency: int, n: int) -> dict[str, float]:
    """``n`` requests against a simulator answering after ``latency_s``, each provider at
    ``concurrency`` slots: elapsed, the ideal the slots allow, and the peak slots taken."""
    with TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            config_path=config_with_concurrency(Path(tmp), concurrency),
            api_port=free_port(),
            log_level="WARNING",
        )
        latency = {"BROKER_SIM_LATENCY_MS": str(latency_s * 1000), "BROKER_SIM_LATENCY_SIGMA": "0"}
        with Stack(settings, extra_env=latency) as stack:
            client = redis.Redis.from_url(stack.env["BROKER_REDIS_URL"])
            providers = [p.name for p in settings.config.providers]
            peak = dict.fromkeys(providers, 0)
            done = threading.Event()

            def watch() -> None:
                while not done.wait(0.2):
                    for p in providers:
                        peak[p] = max(peak[p], client.zcard(redis_keys.in_flight(p)))

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            try:
                _, per_s = run_broker(stack.api_url, n)
            finally:
                done.set()
                watcher.join()
                client.close()
    elapsed = n / per_s
    ideal = n / (len(providers) * concurrency) * latency_s
    return {
        "latency_s": latency_s,
        "concurrency": concurrency,
        "requests": n,
        "elapsed_s": elapsed,
        "ideal_s": ideal,
        "vs_ideal": elapsed / ideal,
        "peak_slots_taken": min(peak.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--dispatch", type=int, default=10_000, help="requests per dispatch round")
    parser.add_argument("--no-single", action="store_true", help="skip the one-ticket stack")
    parser.add_argument("--slow-requests", type=int, default=20_000)
    parser.add_argument("--slow-latency-s", type=float, default=2.0)
    parser.add_argument("--slow-concurrency", type=int, default=1000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--baseline-worker", metavar="QUEUE", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=64, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline_worker:
        baseline_worker(args.baseline_worker, args.concurrency)
        return

    console = Console(stderr=args.json)
    with TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            api_port=free_port(),
            database_url=args.database_url,
            log_level="WARNING",
        )
        single = None
        if not args.no_single:
            single = Stack(
                Settings(
                    data_dir=Path(tmp) / "single",
                    config_path=single_ticket_config(Path(tmp)),
                    api_port=free_port(),
                    log_level="WARNING",
                )
            ).start()
        with Stack(settings) as stack:
            bench_settings = Settings(redis_url=stack.env["BROKER_REDIS_URL"])
            env = {**os.environ, "BROKER_REDIS_URL": bench_settings.redis_url}
            providers = settings.config.providers
            queues = [f"bench.{p.name}" for p in providers]
            workers = [
                Child(
                    q,
                    [
                        sys.executable,
                        __file__,
                        "--baseline-worker",
                        q,
                        "--concurrency",
                        str(p.concurrency),
                    ],
                    env,
                    Path(tmp) / f"{q}.log",
                )
                for q, p in zip(queues, providers)
            ]
            try:
                time.sleep(2)
                wait_until(lambda: all(w.alive for w in workers), 10, "baseline workers")
                run_baseline(bench_settings, queues, 500)  # warm up every side
                run_round_trip_baseline(bench_settings, queues, 500)
                run_broker(stack.api_url, 500)
                if single is not None:
                    run_broker(single.api_url, 500)
                submit, e2e, base, trip, dispatch, one = [], [], [], [], [], []
                slots_config = config_with_concurrency(Path(tmp), 256)
                redis_db_3 = f"{bench_settings.redis_url.rsplit('/', 1)[0]}/3"
                n = args.requests
                redis_pid = {"redis": stack.redis_server.child.proc.pid}
                cpu_trip = CpuMeter({**{w.name: w.proc.pid for w in workers}, **redis_pid})
                cpu_base = CpuMeter({**{w.name: w.proc.pid for w in workers}, **redis_pid})
                cpu_broker = CpuMeter(
                    {**{c.name: c.proc.pid for c in stack.children.values()}, **redis_pid}
                )
                cpu_single = CpuMeter(
                    {c.name: c.proc.pid for c in single.children.values()}
                    | {"redis": single.redis_server.child.proc.pid}
                    if single is not None
                    else {}
                )
                for round_ in range(1, args.rounds + 1):
                    trip.append(
                        cpu_trip.measure(
                            n, lambda: run_round_trip_baseline(bench_settings, queues, n)
                        )
                    )
                    base.append(
                        cpu_base.measure(n, lambda: run_baseline(bench_settings, queues, n))
                    )
                    s, e = cpu_broker.measure(n, lambda: run_broker(stack.api_url, n))
                    submit.append(s)
                    e2e.append(e)
                    if single is not None:
                        one.append(cpu_single.measure(n, lambda: run_broker(single.api_url, n))[1])
                    dispatch.append(
                        dispatcher_round(Path(tmp), redis_db_3, slots_config, args.dispatch, round_)
                    )
                    console.print(
                        f"round {round_}: submit {s:,.0f} rows/s, end to end {e:,.0f} req/s, "
                        f"bare Celery round trip {trip[-1]:,.0f} tasks/s, "
                        f"one way {base[-1]:,.0f} tasks/s, dispatch {dispatch[-1]:,.0f}/s"
                        + (f", one ticket per message {one[-1]:,.0f} req/s" if one else "")
                    )
            finally:
                for worker in workers:
                    worker.stop()
                if single is not None:
                    single.stop()

    slow = None
    if args.slow_requests:
        console.print(f"slow provider: {args.slow_requests:,} requests ...")
        slow = run_slow_provider(args.slow_latency_s, args.slow_concurrency, args.slow_requests)

    table = Table(
        title=f"Spine benchmark: {args.requests:,} requests, median of {args.rounds} "
        f"rounds, {'SQLite' if not args.database_url else args.database_url.split(':')[0]}"
    )
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("all rounds", justify="right")
    for name, values, unit in (
        ("submit (one batch)", submit, "rows/s"),
        ("end to end, completed", e2e, "req/s"),
        ("baseline: bare Celery no-op, round trip", trip, "tasks/s"),
        ("baseline: bare Celery no-op, one way", base, "tasks/s"),
        ("full dispatch path", dispatch, "decisions/s"),
        ("end to end, one ticket per message (the lever off)", one, "req/s"),
    ):
        if not values:
            continue
        table.add_row(
            name, f"{statistics.median(values):,.0f} {unit}", ", ".join(f"{v:,.0f}" for v in values)
        )
    for label, baseline in (("round trip", trip), ("one way", base)):
        ratio = statistics.median(e / b for e, b in zip(e2e, baseline))
        table.add_row(f"end to end / {label} baseline", f"{ratio:.2f}x", "target >= 1.0x")
    if one:
        ratio = statistics.median(e / b for e, b in zip(e2e, one))
        table.add_row("several tickets per message / one", f"{ratio:.2f}x", "")
    if slow is not None:
        table.add_row(
            f"slow provider ({slow['latency_s']:g} s, 2 x {slow['concurrency']:,} slots): "
            f"{slow['requests']:,} requests",
            f"{slow['elapsed_s']:,.1f} s",
            f"slots allow {slow['ideal_s']:,.1f} s: {slow['vs_ideal']:.2f}x (target <= 1.1x); "
            f"peak slots taken {slow['peak_slots_taken']:,}",
        )
    console.print(table)

    cpu = Table(title="Where the CPU goes: median CPU ms per request (broker) or per task")
    cpu.add_column("process")
    cpu.add_column("broker, end to end", justify="right")
    cpu.add_column("one ticket per message", justify="right")
    cpu.add_column("baseline, round trip", justify="right")
    cpu.add_column("baseline, one way", justify="right")
    meters = [m.medians() for m in (cpu_broker, cpu_single, cpu_trip, cpu_base)]
    for name in dict.fromkeys(name for m in meters for name in m):
        cpu.add_row(name, *(f"{m[name]:.2f}" if name in m else "" for m in meters))
    cpu.add_row("total", *(f"{sum(m.values()):.2f}" for m in meters), style="bold")
    console.print(cpu)
    if args.json:
        broker_cpu = meters[0]
        figures = {
            "requests": args.requests,
            "rounds": args.rounds,
            "database": "sqlite" if not args.database_url else args.database_url.split(":")[0],
            "e2e_per_s": statistics.median(e2e),
            "celery_round_trip_per_s": statistics.median(trip),
            "celery_one_way_per_s": statistics.median(base),
            "e2e_vs_celery_round_trip": statistics.median(e / b for e, b in zip(e2e, trip)),
            "e2e_vs_celery_one_way": statistics.median(e / b for e, b in zip(e2e, base)),
            "cpu_ms_per_request": sum(v for k, v in broker_cpu.items() if k != "bench client"),
            "cpu_ms_per_request_by_process": broker_cpu,
            "celery_round_trip_cpu_ms_per_task": sum(meters[2].values()),
            "one_ticket_per_message_e2e_per_s": statistics.median(one) if one else None,
            "one_ticket_per_message_cpu_ms_per_request": sum(meters[1].values()) or None,
            "dispatch_per_s": statistics.median(dispatch),
            "submit_rows_per_s": statistics.median(submit),
            "slow_provider": slow,
        }
        print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
