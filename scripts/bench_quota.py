"""Quota benchmark: how much of a provider's RPM limit the broker uses, without a 429 failing.

    python scripts/bench_quota.py [--requests 3000] [--rpm 3000] [--latency-ms 200]

Starts a private stack (private Redis, SQLite, the simulator, API, scheduler and workers) with a
copy of the packaged ``broker.toml`` in which provider ``sim-openai`` has ``rpm = --rpm``, and a
simulator that enforces the same limit (``BROKER_SIM_RPM``, a sliding 60 s window: a request
over it gets a 429) and answers after a median ``BROKER_SIM_LATENCY_MS``. After one warm-up
request (so the worker pool is up) and a reset of the simulator's counters, it submits
``--requests`` requests to ``gpt-4o-mini`` in one batch through :class:`BrokerClient` and times
from the submission to the job's completion.

The baseline is the ideal: ``requests / rpm`` minutes, the fastest the limit allows (60 s for
3,000 at 3,000/min). Target: elapsed <= 1.05x ideal (the bucket sizing of
:mod:`schedulers.ratelimits` gives up about 5% of the quota to stay under it), every request
succeeded, and no 429 reaching any request's final state (a 429 the simulator sends puts the
request back in its queue; the final ``rate_limited`` errors must be 0). It prints the simulator's
``/_sim/stats``: responses by status (429s seen by workers) and the most requests it served in
one calendar minute. One run: it takes a minute and the result is paced by the limit, not the CPU.
"""

from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from pathlib import Path
from tempfile import TemporaryDirectory

import httpx
from rich.console import Console
from rich.table import Table

from broker.client import BrokerClient
from broker.config.broker_toml import DEFAULT_CONFIG, load_config
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack

PROVIDER = "sim-openai"
MODEL = "gpt-4o-mini"
API_KEY = "ib-dev-product"


def config_with_rpm(tmp: Path, rpm: int) -> Path:
    """A copy of the packaged ``broker.toml`` with ``rpm`` on provider ``sim-openai``."""
    text = DEFAULT_CONFIG.read_text()
    block = re.search(rf'(?ms)^name = "{PROVIDER}"$.*?(?=^\[\[)', text)
    assert block, f"no provider {PROVIDER} in {DEFAULT_CONFIG}"
    edited, count = re.subn(r"(?m)^rpm\s*=\s*\d+", f"rpm = {rpm}", block.group(0))
    assert count == 1, f"provider {PROVIDER} has no rpm line to change"
    path = tmp / "broker.toml"
    path.write_text(text[: block.start()] + edited + text[block.end() :])
    config = load_config(path)
    assert config.provider(PROVIDER).rpm == rpm
    assert config.provider_for_model(MODEL).name == PROVIDER and config.model(MODEL).rpm is None
    return path


def requests(n: int, max_tokens: int) -> list[dict]:
    return [
        {
            "custom_id": f"r{i}",
            "model": MODEL,
            "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": f"Classify ticket {i}: the app crashes."}],
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--rpm", type=int, default=3_000, help="provider and simulator limit")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="simulator median latency")
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()

    console = Console()
    ideal = args.requests / args.rpm * 60
    with TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        settings = Settings(
            data_dir=tmp,
            api_port=free_port(),
            config_path=config_with_rpm(tmp, args.rpm),
            log_level="WARNING",
        )
        extra_env = {
            "BROKER_SIM_RPM": str(args.rpm),
            "BROKER_SIM_LATENCY_MS": str(args.latency_ms),
        }
        with Stack(settings, extra_env=extra_env) as stack:
            sim_url = stack.env["BROKER_SIMULATOR_URL"]
            with BrokerClient(stack.api_url, API_KEY, timeout=120) as client:
                warm = client.submit_batch(requests(1, args.max_tokens), feature="classification")
                warm.wait(timeout=60, poll_interval=0.1)
                assert warm.counts.succeeded == 1, "the warm-up request failed"
                httpx.delete(f"{sim_url}/_sim/stats").raise_for_status()

                started = time.perf_counter()
                job = client.submit_batch(
                    requests(args.requests, args.max_tokens), feature="classification"
                )
                submitted = time.perf_counter()
                job.wait(timeout=ideal * 3 + 120, poll_interval=0.1)
                elapsed = time.perf_counter() - started
                results = list(job.results())
            stats = httpx.get(f"{sim_url}/_sim/stats").json()
            dead = [c.name for c in stack.dead_children()]

    statuses = Counter(r.status.value for r in results)
    errors = Counter(r.error.code for r in results if r.error is not None)
    requeued = sum(1 for r in results if r.attempts > 1)
    by_status = stats["responses"]["by_status"]
    peak = stats["max_requests_per_minute"]
    ratio = elapsed / ideal

    table = Table(
        title=f"Quota: {args.requests:,} requests, {PROVIDER} limited to {args.rpm:,} RPM, "
        f"{args.latency_ms:g} ms latency"
    )
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")
    table.add_row("ideal (requests / rpm)", f"{ideal:.1f} s", "")
    table.add_row("elapsed, submit to job completed", f"{elapsed:.1f} s", "")
    table.add_row("  of which the submission", f"{submitted - started:.2f} s", "")
    table.add_row("elapsed / ideal", f"{ratio:.3f}x", "<= 1.05x")
    table.add_row("requests succeeded", f"{statuses.get('succeeded', 0):,}", f"{args.requests:,}")
    table.add_row(
        "requests failed / other",
        f"{statuses.get('failed', 0):,} / "
        f"{sum(v for k, v in statuses.items() if k not in ('succeeded', 'failed')):,}",
        "0 / 0",
    )
    table.add_row("final errors rate_limited", f"{errors.get('rate_limited', 0):,}", "0")
    if errors:
        table.add_row(
            "final errors, all codes", ", ".join(f"{k} {v}" for k, v in errors.items()), ""
        )
    table.add_row("requests with more than 1 attempt", f"{requeued:,}", "")
    table.add_row("simulator: responses 429", f"{by_status.get('429', 0):,}", "")
    table.add_row(
        "simulator: responses, by status",
        ", ".join(f"{k}: {v:,}" for k, v in by_status.items()),
        "",
    )
    table.add_row(
        "simulator: max per calendar minute",
        f"{peak['openai']:,} (openai), {peak['total']:,} (all)",
        f"<= {args.rpm:,}",
    )
    table.add_row("stack processes that died", ", ".join(dead) or "none", "none")
    console.print(table)


if __name__ == "__main__":
    main()
