"""Interactive latency: what the broker adds to a chat completion over calling the provider.

    python scripts/bench_interactive.py [--json] [--calls 200] [--backlog 10000]
                                        [--database-url URL]

Starts a private stack (zero-latency simulator, private Redis, SQLite unless --database-url)
and times, with the official OpenAI SDK on both sides and a fresh prompt every call (so the
response cache never answers):

- direct: the simulator itself (the baseline: the provider's own HTTP round trip);
- idle: the same calls through the broker (``/v1/chat/completions``: auth, a one-request job,
  the scheduler, a Celery task, the worker's provider call, the result row, the answer);
- backlog: the same again while another team's batch of ``--backlog`` requests drains (calls
  made after it drained are not counted, and the table says how many were).

Sync calls give p50/p95/p99; a streamed call after every fourth (interleaved, so both meet the
same backlog) gives the time to the first content chunk. The
"added" figures are a percentile of the broker's latencies minus the same percentile of the
direct ones, measured in the same run. Targets: p50 <= 10 ms, p99 <= 30 ms added.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
import uuid
from pathlib import Path
from tempfile import TemporaryDirectory

import openai
from rich.console import Console
from rich.table import Table

from broker.client import BrokerClient
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack

BROKER_KEY, BACKLOG_KEY = "ib-dev-product", "ib-dev-content"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed_call(client: openai.OpenAI, stream: bool) -> float:
    """Milliseconds for one call with a fresh prompt (to the first content chunk when
    streaming)."""
    messages = [{"role": "user", "content": f"Ping {uuid.uuid4().hex}"}]
    start = time.perf_counter()
    if not stream:
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=16)
        return (time.perf_counter() - start) * 1000
    first = None
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, max_tokens=16, stream=True
    ):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = (time.perf_counter() - start) * 1000
    return first if first is not None else float("nan")


def timed_calls(client: openai.OpenAI, n: int, until=None) -> tuple[list[float], list[float]]:
    """(sync ms, streamed first-token ms): ``n`` sync calls, with a streamed one after every
    fourth, interleaved so both see the same conditions; stops early once ``until()``."""
    sync, ttft = [], []
    for i in range(n):
        if until is not None and until():
            break
        sync.append(timed_call(client, stream=False))
        if i % 4 == 3:
            ttft.append(timed_call(client, stream=True))
    return sync, ttft


def figures(sync: list[float], ttft: list[float]) -> dict[str, float]:
    return {
        "p50_ms": percentile(sync, 50),
        "p95_ms": percentile(sync, 95),
        "p99_ms": percentile(sync, 99),
        "ttft_ms_p50": statistics.median(ttft) if ttft else float("nan"),
        "calls": len(sync),
    }


def added(measured: dict[str, float], direct: dict[str, float]) -> dict[str, float]:
    return {
        "p50_added_ms": round(measured["p50_ms"] - direct["p50_ms"], 2),
        "p95_added_ms": round(measured["p95_ms"] - direct["p95_ms"], 2),
        "p99_added_ms": round(measured["p99_ms"] - direct["p99_ms"], 2),
        "ttft_added_ms_p50": round(measured["ttft_ms_p50"] - direct["ttft_ms_p50"], 2),
        "calls": measured["calls"],
        **{k: round(v, 2) for k, v in measured.items() if k != "calls"},
    }


def backlog_batch(n: int) -> list[dict]:
    tag = uuid.uuid4().hex[:8]
    return [
        {
            "custom_id": f"b{i}",
            "model": "gpt-4o-mini",
            "max_tokens": 16,
            "messages": [{"role": "user", "content": f"Backlog {tag} {i}"}],
        }
        for i in range(n)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    console = Console(stderr=args.json)

    with TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            api_port=free_port(),
            database_url=args.database_url,
            log_level="WARNING",
        )
        with Stack(settings) as stack:
            sim = f"{stack.env['BROKER_SIMULATOR_URL']}/v1"
            direct_client = openai.OpenAI(base_url=sim, api_key="sim", max_retries=0)
            broker_client = openai.OpenAI(
                base_url=f"{stack.api_url}/v1", api_key=BROKER_KEY, max_retries=0
            )
            for client in (direct_client, broker_client):  # warm up connections and caches
                timed_calls(client, 20)
            console.print(f"timing {args.calls} calls each: direct, then the broker idle")
            direct = figures(*timed_calls(direct_client, args.calls))
            idle = figures(*timed_calls(broker_client, args.calls))
            console.print(f"submitting another team's batch of {args.backlog:,} requests")
            with BrokerClient(stack.api_url, BACKLOG_KEY, timeout=120) as batches:
                job = batches.submit_batch(
                    backlog_batch(args.backlog), feature="summarization", priority="low"
                )

                def drained() -> bool:
                    return job.refresh().data.counts.pending == 0

                sync, ttft = timed_calls(broker_client, args.calls, until=drained)
                left = job.refresh().data.counts.pending
            backlog = figures(sync or [float("nan")], ttft)

    result = {
        "direct": {k: round(v, 2) for k, v in direct.items()},
        "idle": added(idle, direct),
        "backlog": {**added(backlog, direct), "backlog_requests": args.backlog},
    }
    result["backlog"]["backlog_pending_at_end"] = left
    table = Table(title="Interactive latency added by the broker (ms; SDK to simulator = direct)")
    for column in ("", "calls", "p50", "p95", "p99", "TTFT p50"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        "direct (baseline)",
        str(direct["calls"]),
        *(f"{direct[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "ttft_ms_p50")),
    )
    for name, row in (("broker, idle: added", result["idle"]), ("broker, backlog: added",
                                                                  result["backlog"])):
        table.add_row(
            name,
            str(row["calls"]),
            *(
                f"{row[k]:+.1f}"
                for k in ("p50_added_ms", "p95_added_ms", "p99_added_ms", "ttft_added_ms_p50")
            ),
        )
    table.add_row("target", "", "<= 10", "", "<= 30", "")
    console.print(table)
    console.print(
        f"the backlog still had {left:,} of {args.backlog:,} requests pending when the last "
        "call was timed (calls are only counted while it drains)"
    )
    if args.json:  # NaN (nothing measured) is not JSON: null
        print(json.dumps(_nulls(result), sort_keys=True))


def _nulls(value):
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


if __name__ == "__main__":
    main()
