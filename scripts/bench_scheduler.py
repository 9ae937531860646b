"""Scheduler benchmark: dispatch decisions per second at 10,000 and 1,000,000 queued requests.

    python scripts/bench_scheduler.py [--decisions 20000] [--rounds 3] [--skip-million]

What is measured, on a private Redis:

- decisions/s of the scheduler round, with a backlog of 10,000 and of 1,000,000 queued
  requests (targets: >= 2,000/s, and the 1,000,000 figure >= 0.9x the 10,000 one). It runs
  :class:`schedulers.harness.Harness`: the production round (Room, peek, fair queue, priorities,
  routing, in-flight and rate-limit writes, pops, counter writes) on real Redis, with an
  in-process pool instead of the database, Celery and the provider. Two providers of
  ``--concurrency`` slots each (no RPM/TPM), every request finishing after one step
  (``finish_probability=1.0``), so each round fills up to 2 x ``--concurrency`` slots. The
  backlog is spread over 3 teams x 3 priorities and two models (one per provider), pushed with
  :func:`broker.queues.push` in chunks; after every step it is topped up (untimed) with as many
  new entries as were dispatched, so the length stays the same while ``--decisions`` are taken
  from its head. The two backlogs live in two databases of one server and a round alternates
  steps between them, so drift on a noisy machine hits both alike; medians of ``--rounds``
  rounds, and the median of the per-round ratios. (The pool's table of request sizes, a
  million Python objects, is frozen out of the garbage collector: it is the harness's, not
  the scheduler's.)
  The figure is decisions over the time spent in ``Scheduler.run_once``; the time of the whole
  step (which also runs the worker-side feedback in process, one Redis pipeline per finished
  request) is printed beside it.
- Redis memory per queued request: ``INFO memory`` used_memory before and after pushing the
  1,000,000 entries (production-format request ids), divided by their number.
- for honesty, the full dispatch path at a 10,000 backlog: the production
  :class:`schedulers.dispatch.Dispatcher` (journal, database UPDATE, in-flight and rate-limit
  writes, one Celery message per request), built as ``schedulers.service.build_scheduler`` builds
  it (without the leader lease), after submitting 10,000 requests through
  :class:`broker.submission.Submitter` into a fresh SQLite database. No worker runs: between
  rounds the in-flight sets are deleted to free the slots. decisions/s over the time spent in
  ``run_once`` until all 10,000 are dispatched; median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import gc
import random
import re
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import redis
from rich.console import Console
from rich.table import Table

from broker import queues, redis_keys
from broker.config.broker_toml import DEFAULT_CONFIG, BrokerConfig, load_config
from broker.config.settings import Settings
from broker.ids import new_job_id, request_id
from broker.local.processes import RedisServer, free_port
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate
from broker.states import PRIORITY_ORDER, Priority
from broker.store import Database
from broker.submission import Submitter
from schedulers.harness import Harness, _Request
from schedulers.service import build_scheduler

TEAMS = {"alpha": 1.0, "beta": 1.0, "gamma": 2.0}
MODELS = ("gpt-4o-mini", "claude-haiku-4-5")  # one per provider
MAX_TOKENS = (64, 128, 256, 512, 1024)
FILL_CHUNK = 90_000  # entries per queues.push round of the 9 queues (10,000 per queue)


class Backlog:
    """A harness whose queues are filled directly and kept at a fixed length."""

    def __init__(self, client: redis.Redis, config: BrokerConfig, seed: int) -> None:
        self.client = client
        self.harness = Harness(client, config, TEAMS, seed=seed, finish_probability=1.0)
        self._rng = random.Random(seed)
        self._job = new_job_id()
        self._seq = 0
        self.queued = 0
        self.reset()
        scheduler = self.harness.scheduler
        inner = scheduler.run_once

        def timed() -> int:
            started = time.perf_counter()
            try:
                return inner()
            finally:
                self._run_once_s += time.perf_counter() - started

        scheduler.run_once = timed  # type: ignore[method-assign]

    def _entries(self, team: str, priority: Priority, n: int) -> list[tuple[Priority, QueueEntry]]:
        """``n`` requests of realistic size, registered with the pool (which needs their sizes)."""
        now = queues.now_ms()
        out = []
        sizes = self.harness.pool.sizes
        for _ in range(n):
            rid = request_id(self._job, self._seq)
            model = MODELS[self._seq % 2]
            self._seq += 1
            est_in = int(self._rng.lognormvariate(5.5, 0.8)) + 10  # median ~250 tokens
            max_out = self._rng.choice(MAX_TOKENS)
            out.append((priority, QueueEntry(rid, model, 4 * est_in, max_out, now, "search")))
            sizes[rid] = _Request(team, (est_in, max_out, est_in, max_out // 2))
        return out

    def fill(self, n: int) -> None:
        """Push ``n`` entries, spread evenly over every team and priority."""
        pairs = [(t, p) for t in TEAMS for p in PRIORITY_ORDER]
        left = n
        while left:
            chunk = min(left, FILL_CHUNK)
            for i, (team, priority) in enumerate(pairs):
                share = chunk // len(pairs) + (1 if i < chunk % len(pairs) else 0)
                if share:
                    queues.push(self.client, team, self._entries(team, priority, share))
            left -= chunk
        self.queued += n

    def length(self) -> int:
        with self.client.pipeline(transaction=False) as pipe:
            for team in TEAMS:
                for priority in PRIORITY_ORDER:
                    pipe.llen(redis_keys.team_queue(team, priority))
            return sum(pipe.execute())

    def step(self) -> int:
        """One harness step, timed, then the dispatched entries replaced at the tails (untimed)."""
        pool = self.harness.pool
        started = time.perf_counter()
        sent = self.harness.step()
        self.step_s += time.perf_counter() - started
        if sent == 0:
            raise RuntimeError("a round dispatched nothing with a backlog: check the pool")
        self.decided += sent
        refill: dict[tuple[str, Priority], int] = {}
        for pick in pool.sent:
            refill[pick.team, pick.priority] = refill.get((pick.team, pick.priority), 0) + 1
            del pool.sizes[pick.entry.request_id]
        pool.sent.clear()
        for (team, priority), n in refill.items():
            queues.push(self.client, team, self._entries(team, priority, n))
        return sent

    def reset(self) -> None:
        self.decided, self.step_s, self._run_once_s = 0, 0.0, 0.0

    def rates(self) -> tuple[float, float]:
        """(decisions/s in the scheduler round, decisions/s of the whole harness step)."""
        return self.decided / self._run_once_s, self.decided / self.step_s


def measure(backlogs: list[Backlog], decisions: int) -> list[tuple[float, float]]:
    """Step the backlogs in turn until each has taken ``decisions``: noise hits all alike."""
    for backlog in backlogs:
        backlog.reset()
    while any(b.decided < decisions for b in backlogs):
        for backlog in backlogs:
            if backlog.decided < decisions:
                backlog.step()
    return [b.rates() for b in backlogs]


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def harness_config(concurrency: int) -> BrokerConfig:
    base = load_config()
    return base.with_providers(
        [
            p.model_copy(update={"concurrency": concurrency, "rpm": None, "tpm": None})
            for p in base.providers
        ]
    )


def dispatcher_round(tmp: Path, redis_url: str, config_path: Path, n: int, round_: int) -> float:
    """The production dispatch path from a fresh database with ``n`` queued requests."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    database_url = f"sqlite:///{tmp / f'dispatch-{round_}.db'}"
    db = Database(database_url)
    db.migrate()
    settings = Settings(
        redis_url=redis_url,
        database_url=database_url,
        data_dir=tmp,
        config_path=config_path,
        api_port=free_port(),
        log_level="WARNING",
    )
    config = settings.config
    submitter = Submitter(db, client, config)
    teams = [t.id for t in config.teams]
    for i, team in enumerate(teams):
        count = n // len(teams) + (1 if i < n % len(teams) else 0)
        body = JobCreate(
            feature="classification",
            requests=[
                {
                    "custom_id": f"r{j}",
                    "model": MODELS[j % 2],
                    "max_tokens": MAX_TOKENS[j % len(MAX_TOKENS)],
                    "messages": [{"role": "user", "content": f"Classify ticket {j}: it crashes."}],
                }
                for j in range(count)
            ],
        )
        submitter.submit(config.team(team), body)
    scheduler = build_scheduler(settings, db, client, lead=False)
    in_flight = [redis_keys.in_flight(p.name) for p in config.providers]
    done, spent = 0, 0.0
    try:
        while done < n:
            started = time.perf_counter()
            sent = scheduler.run_once()
            spent += time.perf_counter() - started
            if sent == 0:
                raise RuntimeError(f"a round dispatched nothing after {done} of {n}")
            done += sent
            client.delete(*in_flight)
    finally:
        db.dispose()
        client.close()
    return done / spent


def config_with_concurrency(tmp: Path, concurrency: int) -> Path:
    """A copy of the packaged ``broker.toml`` with every provider at ``concurrency`` slots."""
    text, count = re.subn(
        r"(?m)^concurrency\s*=\s*\d+", f"concurrency = {concurrency}", DEFAULT_CONFIG.read_text()
    )
    path = tmp / "broker.toml"
    path.write_text(text)
    config = load_config(path)
    assert count == len(config.providers)
    assert all(p.concurrency == concurrency for p in config.providers)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=20_000, help="per round and backlog")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-million", action="store_true", help="only the 10,000 backlog")
    parser.add_argument("--small", type=int, default=10_000, help="the small backlog")
    parser.add_argument("--large", type=int, default=1_000_000, help="the large backlog")
    parser.add_argument("--concurrency", type=int, default=256, help="slots per provider")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    console = Console()
    config = harness_config(args.concurrency)
    sizes = [args.small] + ([] if args.skip_million else [args.large])
    results: dict[int, list[tuple[float, float]]] = {n: [] for n in sizes}
    with TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server = RedisServer(tmp / "redis")
        try:
            backlogs: dict[int, Backlog] = {}
            for db_index, n in enumerate(sizes, start=1):
                client = redis.Redis(host="127.0.0.1", port=server.port, db=db_index)
                client.flushdb()
                backlog = backlogs[n] = Backlog(client, config, args.seed)
                before = used_memory(client)
                started = time.perf_counter()
                backlog.fill(n)
                fill_s = time.perf_counter() - started
                grown = used_memory(client) - before
                console.print(
                    f"backlog {n:,}: filled in {fill_s:.1f} s ({n / fill_s:,.0f} entries/s), "
                    f"Redis used_memory +{grown / 2**20:,.1f} MiB = {grown / n:.1f} B/request"
                )
                memory_per_request = grown / n
            # The pool's million request sizes are the benchmark's, not the scheduler's: keep
            # the garbage collector from walking them again and again.
            gc.collect()
            gc.freeze()
            measure(list(backlogs.values()), min(args.decisions, 2_000))  # warm up
            for round_ in range(1, args.rounds + 1):
                line = []
                rates = measure(list(backlogs.values()), args.decisions)
                for (n, backlog), rate in zip(backlogs.items(), rates):
                    results[n].append(rate)
                    assert backlog.length() == n, "the backlog did not keep its length"
                    line.append(f"{n:,}: {rate[0]:,.0f}/s (step {rate[1]:,.0f}/s)")
                console.print(f"round {round_}: " + ", ".join(line))
            gc.unfreeze()
            for backlog in backlogs.values():
                backlog.client.flushdb()
                backlog.client.close()
            backlogs.clear()

            config_path = config_with_concurrency(tmp, args.concurrency)
            full = []
            for round_ in range(1, args.rounds + 1):
                full.append(
                    dispatcher_round(
                        tmp, f"{server.url.rsplit('/', 1)[0]}/3", config_path, args.small, round_
                    )
                )
                console.print(f"full dispatch round {round_}: {full[-1]:,.0f} decisions/s")
        finally:
            server.stop()

    table = Table(
        title=f"Scheduler: {args.decisions:,} decisions per round, median of {args.rounds} rounds, "
        f"2 providers x {args.concurrency} slots"
    )
    table.add_column("measure")
    table.add_column("median", justify="right")
    table.add_column("all rounds", justify="right")
    table.add_column("target", justify="right")
    for n in sizes:
        rounds = [r[0] for r in results[n]]
        table.add_row(
            f"scheduler round, {n:,} queued",
            f"{statistics.median(rounds):,.0f} /s",
            ", ".join(f"{v:,.0f}" for v in rounds),
            ">= 2,000 /s",
        )
    for n in sizes:
        steps = [r[1] for r in results[n]]
        table.add_row(
            f"  step incl. worker feedback, {n:,}",
            f"{statistics.median(steps):,.0f} /s",
            ", ".join(f"{v:,.0f}" for v in steps),
            "",
        )
    if not args.skip_million:
        ratios = [big[0] / small[0] for small, big in zip(results[args.small], results[args.large])]
        table.add_row(
            f"ratio {args.large:,} / {args.small:,}",
            f"{statistics.median(ratios):.2f}x",
            ", ".join(f"{v:.2f}" for v in ratios),
            ">= 0.90x",
        )
        table.add_row("Redis memory / queued request", f"{memory_per_request:.1f} B", "", "")
    table.add_row(
        f"full dispatch (DB + Celery), {args.small:,}",
        f"{statistics.median(full):,.0f} /s",
        ", ".join(f"{v:,.0f}" for v in full),
        "",
    )
    console.print(table)


if __name__ == "__main__":
    main()
