"""Fairness benchmark: weighted fair queueing (VTC) against plain FIFO, under a flood.

    python scripts/bench_fairness.py [--flood 20000] [--steps 500] [--per-step 16] [--seed 0]

Three teams with weights 1:1:2: ``flood`` (weight 1) submits one huge batch at step 0;
``steady`` (1) and ``premium`` (2) each submit a small batch every step, more than their share,
so all three stay backlogged for the whole run. The same workload (same request sizes, same
random completions, from ``--seed``) runs twice in this process on one private Redis, emptied
in between, through :class:`schedulers.harness.Harness`: the production scheduler round on real
Redis, with an in-process pool of ``--concurrency`` slots (each running request finishes with
probability 1/2 per step) instead of the database, Celery and the provider.

- ours: each team has its own queues and its weight; the scheduler picks by virtual counters;
- baseline, FIFO: every submission goes, in arrival order, into one queue (team ``fifo``), with
  its service accounted to the team that sent it.

For each policy it prints every team's share of the weighted service received (counted at
dispatch, actual usage) against its target share (weight / total weight), Jain's index over the
weight-normalised service (1 is perfectly fair, 1/3 is one team taking everything), and the
largest difference in weight-normalised service between any two teams, sampled after every
step. For reference it prints the bound of :mod:`schedulers.fairness` for two backlogged teams,
``2U + K·U`` (U: the largest single charge, estimated weighted service / weight; K: the pool's
in-flight capacity). The run is deterministic for a seed, so there are no rounds to take medians of.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from tempfile import TemporaryDirectory

import redis
from rich.console import Console
from rich.table import Table

from broker.config.broker_toml import BrokerConfig, load_config
from broker.local.processes import RedisServer
from schedulers.fairness import ServiceMeter
from schedulers.harness import Harness, Size, jain_index

WEIGHTS = {"flood": 1.0, "steady": 1.0, "premium": 2.0}
TEAMS = list(WEIGHTS)
FIFO = "fifo"


def pool_config(concurrency: int) -> BrokerConfig:
    """The packaged catalog with every provider at ``concurrency`` slots and no rate limits."""
    base = load_config()
    return base.with_providers(
        [
            p.model_copy(update={"concurrency": concurrency, "rpm": None, "tpm": None})
            for p in base.providers
        ]
    )


def workload(
    harness: Harness, flood: int, steps: int, per_step: int
) -> tuple[list[Size], list[dict[str, list[Size]]]]:
    """The flood, then each step's batches; drawn up front so both policies see the same."""
    first = harness.random_sizes(flood)
    batches = [
        {team: harness.random_sizes(per_step) for team in ("steady", "premium")}
        for _ in range(steps)
    ]
    return first, batches


def run(client: redis.Redis, config: BrokerConfig, args: argparse.Namespace, *, fifo: bool) -> dict:
    client.flushdb()
    harness = Harness(client, config, WEIGHTS, seed=args.seed)
    flood, batches = workload(harness, args.flood, args.steps, args.per_step)

    def submit(team: str, sizes: list[Size]) -> None:
        if fifo:
            harness.submit(FIFO, sizes, account_to=team)
        else:
            harness.submit(team, sizes)

    meter = ServiceMeter(config)
    largest_charge = max(
        meter.service("gpt-4o-mini", est_in, max_out) / WEIGHTS[team]
        for team, sizes in [("flood", flood)]
        + [(t, s) for batch in batches for t, s in batch.items()]
        for est_in, max_out, _, _ in sizes
    )
    submit("flood", flood)
    max_gap = 0.0
    dispatched = 0
    started = time.perf_counter()
    for batch in batches:
        for team, sizes in batch.items():
            submit(team, sizes)
        dispatched += harness.step()
        normalised = harness.normalised()
        values = [normalised.get(t, 0.0) for t in TEAMS]
        max_gap = max(max_gap, max(values) - min(values))
    elapsed = time.perf_counter() - started

    # Every team must still have been waiting at the end, or the comparison is void.
    sent = {t: 0 for t in TEAMS}
    for pick in harness.pool.sent:
        sent[harness.pool.sizes[pick.entry.request_id].team] += 1
    submitted = {
        "flood": args.flood,
        **{t: args.per_step * args.steps for t in ("steady", "premium")},
    }
    starved = [t for t in TEAMS if sent[t] >= submitted[t]]
    if starved:
        raise SystemExit(f"{', '.join(starved)} ran out of work: raise --flood or --per-step")

    normalised = harness.normalised()
    total = sum(harness.service.values())
    return {
        "share": {t: harness.service.get(t, 0.0) / total for t in TEAMS},
        "sent": sent,
        "jain": jain_index([normalised.get(t, 0.0) for t in TEAMS]),
        "max_gap": max_gap,
        "final_gap": max(normalised.get(t, 0.0) for t in TEAMS)
        - min(normalised.get(t, 0.0) for t in TEAMS),
        "U": largest_charge,
        "dispatched": dispatched,
        "elapsed": elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flood", type=int, default=20_000, help="requests flood sends at step 0")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument(
        "--per-step", type=int, default=16, help="requests steady and premium each send per step"
    )
    parser.add_argument("--concurrency", type=int, default=32, help="in-flight slots of the pool")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    console = Console()
    config = pool_config(args.concurrency)
    with TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        client = redis.Redis.from_url(server.url)
        try:
            results = {
                "ours (VTC)": run(client, config, args, fifo=False),
                "baseline: FIFO": run(client, config, args, fifo=True),
            }
        finally:
            client.close()
            server.stop()

    total_weight = sum(WEIGHTS.values())
    u = next(iter(results.values()))["U"]  # the same workload for both
    bound = 2 * u + args.concurrency * u
    table = Table(
        title=f"Fairness: flood of {args.flood:,} at step 0, steady and premium "
        f"{args.per_step}/step, {args.steps} steps, pool of {args.concurrency}, seed {args.seed}"
    )
    table.add_column("measure")
    table.add_column("target", justify="right")
    for name in results:
        table.add_column(name, justify="right")
    for team in TEAMS:
        table.add_row(
            f"share: {team} (w{WEIGHTS[team]:g})",
            f"{WEIGHTS[team] / total_weight:.2f}",
            *(f"{r['share'][team]:.3f}" for r in results.values()),
        )
    table.add_row(
        "Jain's index (normalised)",
        "1",
        *(f"{r['jain']:.4f}" for r in results.values()),
    )
    table.add_row(
        "max gap (normalised)",
        f"<= {bound:,.0f}",
        *(f"{r['max_gap']:,.0f}" for r in results.values()),
    )
    table.add_row(
        "  max gap / VTC bound",
        "<= 1",
        *(f"{r['max_gap'] / bound:.3f}" for r in results.values()),
    )
    table.add_row("gap at the end", "", *(f"{r['final_gap']:,.0f}" for r in results.values()))
    table.add_row(
        "sent: flood/steady/premium",
        "",
        *("/".join(f"{r['sent'][t]:,}" for t in TEAMS) for r in results.values()),
    )
    table.add_row("wall time", "", *(f"{r['elapsed']:.1f} s" for r in results.values()))
    console.print(table)
    console.print(
        f"VTC bound 2U + K·U with U = {u:,.0f} (largest estimated weighted charge / weight) "
        f"and K = {args.concurrency} (in-flight slots): {bound:,.0f}."
    )


if __name__ == "__main__":
    main()
