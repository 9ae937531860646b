"""A 50,000-line, ~200 MB batch input through the OpenAI SDK: upload, batches.create, drain,
with the API process's peak memory.

    python scripts/bench_upload.py [--lines 50000] [--line-bytes 4000] [--no-wait] [--json]

Writes a JSONL input file of ``--lines`` chat requests, each prompt about ``--line-bytes``
long (distinct, so none is a cache hit), starts a private stack (SQLite, zero-latency
simulator), then with the official ``openai`` SDK: ``files.create`` (multipart, streamed to
disk by the API), ``batches.create``, and (unless ``--no-wait``) polls ``batches.retrieve``
until the batch ends. Meanwhile it samples the API process's resident memory every 50 ms and
reads its high-water mark (``VmHWM``) at the end. Target: peak under 300 MB.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from openai import OpenAI
from rich.console import Console
from rich.table import Table

from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack

TARGET_MIB = 300
FILLER = "The customer writes that the app crashes when they open the settings page. "


def write_input(path: Path, lines: int, line_bytes: int) -> int:
    """The batch input file; returns its size in bytes."""
    filler = (FILLER * (line_bytes // len(FILLER) + 1))[:line_bytes]
    with path.open("w") as out:
        for i in range(lines):
            body = {
                "model": ("gpt-4o-mini", "claude-haiku-4-5")[i % 2],
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Ticket {i}: {filler}"}],
            }
            line = {"custom_id": f"t{i}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")
    return path.stat().st_size


def status_mib(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Peak(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.halt = pid, 0.0, threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.05):
            self.peak = max(self.peak, status_mib(self.pid, "VmRSS"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--line-bytes", type=int, default=4_000)
    parser.add_argument("--no-wait", action="store_true", help="stop once the batch is created")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    console = Console(stderr=args.json)
    figures: dict[str, float | int | str | None] = {"lines": args.lines}
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "input.jsonl"
        figures["file_mb"] = write_input(path, args.lines, args.line_bytes) / 1e6
        console.print(f"input: {args.lines:,} lines, {figures['file_mb']:,.0f} MB")
        settings = Settings(data_dir=Path(tmp) / "data", api_port=free_port(), log_level="WARNING")
        with Stack(settings) as stack:
            api_pid = stack.children["api"].proc.pid
            figures["api_rss_before_mib"] = status_mib(api_pid, "VmRSS")
            peak = Peak(api_pid)
            peak.start()
            client = OpenAI(
                base_url=f"{stack.api_url}/v1", api_key="ib-dev-product", timeout=600, max_retries=0
            )
            started = time.monotonic()
            with path.open("rb") as handle:
                uploaded = client.files.create(file=handle, purpose="batch")
            figures["upload_s"] = time.monotonic() - started
            started = time.monotonic()
            batch = client.batches.create(
                input_file_id=uploaded.id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
            )
            figures["create_s"] = time.monotonic() - started
            figures["api_peak_after_create_mib"] = max(peak.peak, status_mib(api_pid, "VmHWM"))
            if not args.no_wait:
                deadline = time.monotonic() + args.timeout_s
                while batch.status not in ("completed", "failed", "expired", "cancelled"):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(2)
                    batch = client.batches.retrieve(batch.id)
                figures["drain_s"] = time.monotonic() - started
            counts = batch.request_counts
            figures.update(
                status=batch.status,
                completed=counts.completed if counts else None,
                failed=counts.failed if counts else None,
            )
            peak.halt.set()
            peak.join()
            figures["api_peak_mib"] = max(peak.peak, status_mib(api_pid, "VmHWM"))
            client.close()

    table = Table(title=f"Upload and run a {figures['file_mb']:,.0f} MB batch file (OpenAI SDK)")
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("lines", f"{args.lines:,}")
    table.add_row("files.create", f"{figures['upload_s']:,.1f} s")
    table.add_row("batches.create", f"{figures['create_s']:,.1f} s")
    if "drain_s" in figures:
        table.add_row("create to the batch's end", f"{figures['drain_s']:,.1f} s")
    table.add_row("batch status, completed / failed", f"{figures['status']}, "
                  f"{figures['completed']} / {figures['failed']}")  # fmt: skip
    table.add_row("API resident memory before", f"{figures['api_rss_before_mib']:,.0f} MiB")
    table.add_row("API peak resident memory", f"{figures['api_peak_mib']:,.0f} MiB")
    table.add_row("target", f"< {TARGET_MIB} MiB")
    console.print(table)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    return 0 if figures["api_peak_mib"] < TARGET_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
