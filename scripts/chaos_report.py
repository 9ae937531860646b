"""Chaos report: inject each fault into a running stack mid-batch and count what was lost.

    python scripts/chaos_report.py                      # every fault, SQLite
    python scripts/chaos_report.py outage malformed     # some of them
    python scripts/chaos_report.py --database-url postgresql://postgres@127.0.0.1:5432/ib_chaos
    python scripts/chaos_report.py --json               # the table on stderr, one JSON object out

For each fault (see :mod:`broker.local.chaos_scenarios`) a fresh stack runs (private Redis, the
simulator, API, scheduler, one worker pool per provider) and one batch is submitted; the fault
is injected while the batch runs. The table counts, from the database: requests, succeeded,
failed, lost (no terminal state when the run ended: must be 0) and double-charged (a request
with more than one ledger row: must be 0), and what each fault showed on the way. Exit status 1
if anything was lost or charged twice. About five minutes for all six.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from tempfile import TemporaryDirectory

from rich.console import Console
from rich.table import Table

from broker.local.chaos import ChaosResult
from broker.local.chaos_scenarios import SCENARIOS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "faults", nargs="*", metavar="FAULT", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--database-url", default=None, help="default: a SQLite file per run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    unknown = [f for f in args.faults if f not in SCENARIOS]
    if unknown:
        parser.error(f"unknown fault {unknown[0]!r} (known: {', '.join(SCENARIOS)})")
    console = Console(stderr=args.json)
    results: list[ChaosResult] = []
    with TemporaryDirectory(prefix="ib-chaos-") as tmp:
        for name in args.faults or list(SCENARIOS):
            console.print(f"[bold]{name}[/] ...")
            result = SCENARIOS[name](Path(tmp) / name, args.database_url)
            results.append(result)
    table = Table(title="chaos report")
    for column in ("fault injected", "requests", "succeeded", "failed", "lost", "double-charged"):
        table.add_column(column, justify="left" if column == "fault injected" else "right")
    for r in results:
        t = r.tally
        table.add_row(
            r.fault,
            f"{t.requests:,}",
            f"{t.succeeded:,}",
            f"{t.failed:,}",
            f"{t.lost:,}",
            f"{t.double_charged:,}",
        )
    console.print(table)
    for r in results:
        t = r.tally
        seen = [f"{k}: {v}" for k, v in r.notes.items()]
        seen.append("succeeded by provider: " + _counts(t.by_provider))
        if t.errors:
            seen.append("failed by reason: " + _counts(t.errors))
        console.print(f"[bold]{r.fault}[/]: " + "; ".join(seen), soft_wrap=True)
    bad = any(r.tally.lost or r.tally.double_charged for r in results)
    if args.json:
        faults = [{"fault": r.fault, **asdict(r.tally), "notes": r.notes} for r in results]
        print(json.dumps({"faults": faults, "passed": not bad}, default=str, sort_keys=True))
    return 1 if bad else 0


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in sorted(counts.items())) or "none"


if __name__ == "__main__":
    sys.exit(main())
