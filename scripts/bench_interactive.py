"""Interactive latency: what the broker adds to a chat completion over calling the provider.

    python scripts/bench_interactive.py [--json] [--calls 200] [--backlog 10000]
                                        [--database-url URL] [--stream-chunk-ms 0]

Starts a private stack (zero-latency simulator, private Redis, SQLite unless --database-url)
and times, with the official OpenAI SDK on both sides and a fresh prompt every call (so the
response cache never answers):

- direct: the simulator itself (the baseline: the provider's own HTTP round trip);
- idle: the same calls through the broker (``/v1/chat/completions``: auth, a one-request job,
  the scheduler, a Celery task, the worker's provider call, the result row, the answer);
- backlog: the same again while another team's batch of ``--backlog`` requests drains (calls
  made after it drained are not counted, and the table says how many were).

Sync calls give p50/p95/p99; a streamed call after every fourth (interleaved, so both meet the
same backlog) gives the time to the first content chunk; ``--stream-chunk-ms`` makes the
simulator pause between the chunks it streams, as a model writing does, so that figure shows
whether the first token waits for the last (it is in the JSON as ``stream_chunk_ms``). The "added" figures are a percentile
of the broker's latencies minus the same percentile of the direct ones, measured in the same
run. Targets: p50 <= 10 ms, p99 <= 30 ms added. A second table says where a sync call's time
goes, idle and behind the backlog: the medians of the spans between the SDK sending it, the
request row's ``created_at``, ``dispatched_at``, ``started_at`` and ``finished_at``, and the
SDK having the answer (``stages_ms_p50`` in the JSON).
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

import httpx
import openai
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from broker.client import BrokerClient
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack
from broker.store import Database, Request

BROKER_KEY, BACKLOG_KEY = "ib-dev-product", "ib-dev-content"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


#: A sync call through the broker: its request id, and when the SDK sent it and had the answer.
Mark = tuple[str, float, float]


def timed_call(client: openai.OpenAI, stream: bool, marks: list[Mark] | None = None) -> float:
    """Milliseconds for one call with a fresh prompt (to the first content chunk when
    streaming); a sync call's request id and wall-clock span go to ``marks`` when given."""
    messages = [{"role": "user", "content": f"Ping {uuid.uuid4().hex}"}]
    start, sent = time.perf_counter(), time.time()
    if not stream:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=messages, max_tokens=16
        )
        elapsed = (time.perf_counter() - start) * 1000
        if marks is not None and raw.headers.get("x-request-id"):
            marks.append((raw.headers["x-request-id"], sent, time.time()))
        return elapsed
    first = None
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, max_tokens=16, stream=True
    ):
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = (time.perf_counter() - start) * 1000
    return first if first is not None else float("nan")


def timed_calls(
    client: openai.OpenAI, n: int, until=None, marks: list[Mark] | None = None
) -> tuple[list[float], list[float]]:
    """(sync ms, streamed first-token ms): ``n`` sync calls, with a streamed one after every
    fourth, interleaved so both see the same conditions; stops early once ``until()``."""
    sync, ttft = [], []
    for i in range(n):
        if until is not None and until():
            break
        sync.append(timed_call(client, stream=False, marks=marks))
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


#: Where a sync call's time goes, from its request row's timestamps and the SDK's clock.
STAGES = (
    ("sdk to the job row (HTTP, auth, validation)", "submitted"),
    ("rest of submission, the scheduler's pick, to the dispatch", "picked"),
    ("dispatch commit, Celery delivery, the worker's claim", "claimed"),
    ("provider call and the outcome's commit", "called"),
    ("feedback, the API's wake and read, the answer", "answered"),
)


def stages(database_url: str, marks: list[Mark]) -> dict[str, float]:
    """Median milliseconds of each of :data:`STAGES` over the calls in ``marks``."""
    db = Database(database_url)
    try:
        with db.session() as session:
            rows = {
                row.id: row
                for row in session.execute(
                    select(
                        Request.id,
                        Request.created_at,
                        Request.dispatched_at,
                        Request.started_at,
                        Request.finished_at,
                    ).where(Request.id.in_([m[0] for m in marks]))
                )
            }
    finally:
        db.dispose()
    spans: dict[str, list[float]] = {key: [] for _, key in STAGES}
    for request_id, sent, answered in marks:
        row = rows.get(request_id)
        if row is None or None in (row.dispatched_at, row.started_at, row.finished_at):
            continue  # a cache hit or a failure: no dispatch to time
        times = [sent, *(t.timestamp() for t in row[1:]), answered]
        for (_, key), begin, end in zip(STAGES, times, times[1:]):
            spans[key].append((end - begin) * 1000)
    return {key: round(statistics.median(v), 2) if v else float("nan") for key, v in spans.items()}


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
    parser.add_argument(
        "--stream-chunk-ms",
        type=float,
        default=0.0,
        help="the simulator's pause between streamed chunks (sync calls are not paced)",
    )
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
            pace = {"stream_chunk_ms": args.stream_chunk_ms}
            httpx.post(
                f"{stack.env['BROKER_SIMULATOR_URL']}/_sim/config", json=pace
            ).raise_for_status()
            direct_client = openai.OpenAI(base_url=sim, api_key="sim", max_retries=0)
            broker_client = openai.OpenAI(
                base_url=f"{stack.api_url}/v1", api_key=BROKER_KEY, max_retries=0
            )
            for client in (direct_client, broker_client):  # warm up connections and caches
                timed_calls(client, 20)
            console.print(f"timing {args.calls} calls each: direct, then the broker idle")
            direct = figures(*timed_calls(direct_client, args.calls))
            idle_marks: list[Mark] = []
            idle = figures(*timed_calls(broker_client, args.calls, marks=idle_marks))
            console.print(f"submitting another team's batch of {args.backlog:,} requests")
            with BrokerClient(stack.api_url, BACKLOG_KEY, timeout=120) as batches:
                job = batches.submit_batch(
                    backlog_batch(args.backlog), feature="summarization", priority="low"
                )

                def drained() -> bool:
                    return job.refresh().data.counts.pending == 0

                backlog_marks: list[Mark] = []
                sync, ttft = timed_calls(
                    broker_client, args.calls, until=drained, marks=backlog_marks
                )
                left = job.refresh().data.counts.pending
            backlog = figures(sync or [float("nan")], ttft)
            database_url = stack.env["BROKER_DATABASE_URL"]
            spent = {
                "idle": stages(database_url, idle_marks),
                "backlog": stages(database_url, backlog_marks),
            }

    result = {
        "direct": {k: round(v, 2) for k, v in direct.items()},
        "stream_chunk_ms": args.stream_chunk_ms,
        "idle": added(idle, direct),
        "backlog": {**added(backlog, direct), "backlog_requests": args.backlog},
    }
    result["backlog"]["backlog_pending_at_end"] = left
    result["idle"]["stages_ms_p50"] = spent["idle"]
    result["backlog"]["stages_ms_p50"] = spent["backlog"]
    table = Table(title="Interactive latency added by the broker (ms; SDK to simulator = direct)")
    for column in ("", "calls", "p50", "p95", "p99", "TTFT p50"):
        table.add_column(column, justify="right" if column else "left")
    table.add_row(
        "direct (baseline)",
        str(direct["calls"]),
        *(f"{direct[k]:.1f}" for k in ("p50_ms", "p95_ms", "p99_ms", "ttft_ms_p50")),
    )
    for name, row in (
        ("broker, idle: added", result["idle"]),
        ("broker, backlog: added", result["backlog"]),
    ):
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
    where = Table(title="Where a sync call's time goes (ms, medians; request rows' timestamps)")
    for column in ("stage", "idle", "backlog"):
        where.add_column(column, justify="left" if column == "stage" else "right")
    for label, key in STAGES:
        where.add_row(label, f"{spent['idle'][key]:.1f}", f"{spent['backlog'][key]:.1f}")
    console.print(where)
    if args.json:  # NaN (nothing measured) is not JSON: null
        print(json.dumps(_nulls(result), sort_keys=True))


def _nulls(value):
    if isinstance(value, dict):
        return {k: _nulls(v) for k, v in value.items()}
    return None if isinstance(value, float) and math.isnan(value) else value


if __name__ == "__main__":
    main()
