#!/usr/bin/env python3
"""What routing and cascades save, on recorded model answers, through the real stack.

    python scripts/bench_cost.py [--data ../shared/data/routing] [--limit N] [--json]

Starts a whole local stack (private Redis, SQLite, the simulator, API, scheduler, worker
pools). The simulator replays RouteLLM's recorded GSM8K answers (any CSV in the layout of
``gsm8k_responses.csv``): the small tier (gpt-4o-mini) answers with the weak model's
(Mixtral-8x7B) recorded answer, the flagship (gpt-4o) with the strong model's (GPT-4). Every
question runs, through API → scheduler → pools → cascade checks → escalation, in each mode:

- all-flagship: every question on gpt-4o;  all-small: every question on gpt-4o-mini;
- routed: route ``bench-routed`` (the shipped learned router, no cascade);
- cascade: route ``bench-cascade`` (the small tier first, checks escalate);
- routed + cascade: route ``bench-routed-cascade``.

The prompt asks for the final answer as ``#### <number>`` (GSM8K's own form), so the
``answer_format`` check can see a missing one. Accuracy is by the recorded correctness of the
model whose answer a question ended with; cost is what the broker charged (escalated
questions pay both tiers). The cache is off for every request (``cache.read/store`` false),
so modes do not answer each other.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from broker.client import BrokerClient  # noqa: E402
from broker.config.broker_toml import load_config  # noqa: E402
from broker.config.settings import Settings  # noqa: E402
from broker.local.processes import free_port  # noqa: E402
from broker.local.stack import Stack  # noqa: E402

SMALL, FLAGSHIP = "gpt-4o-mini", "gpt-4o"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"
INSTRUCTION = "Solve it step by step. End with the final answer as '#### <number>'."
CHECKS = ["empty", "refusal", "truncated", "answer_format"]
MODES = {
    "all-flagship": FLAGSHIP,
    "all-small": SMALL,
    "routed": "bench-routed",
    "cascade": "bench-cascade",
    "routed + cascade": "bench-routed-cascade",
}


def bench_config(path: Path) -> None:
    """The default broker.toml plus the three bench routes, written as TOML."""
    import tomllib

    text = (ROOT / "broker/config/defaults/broker.toml").read_text()
    tomllib.loads(text)  # it parses as it is
    routes = {
        "bench-routed": 'learned = "default"\nquality = 0.95',
        "bench-cascade": 'learned = "off"\ncascade = { checks = %s }' % json.dumps(CHECKS),
        "bench-routed-cascade": 'learned = "default"\nquality = 0.95\ncascade = { checks = %s }'
        % json.dumps(CHECKS),
    }
    for name, body in routes.items():
        text += f'\n[[routes]]\nname = "{name}"\ntiers = ["{SMALL}", "{FLAGSHIP}"]\n{body}\n'
    path.write_text(text)
    load_config(path)  # refuse a bad file here, not in a child process


def questions(data: Path, limit: int | None) -> list[dict]:
    with (data / "gsm8k_responses.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return rows[:limit] if limit else rows


def run_mode(client: BrokerClient, model: str, rows: list[dict]) -> dict:
    requests = [
        {
            "custom_id": f"q{i}",
            "model": model,
            "max_tokens": 1000,
            "temperature": 0,
            "cache": {"read": False, "store": False},
            "messages": [{"role": "user", "content": f"{row['prompt']}\n\n{INSTRUCTION}"}],
        }
        for i, row in enumerate(rows)
    ]
    job = client.submit_batch(requests, feature="bench-gsm8k")
    job.wait(timeout=1800, poll_interval=0.5)
    correct = flagship = escalated = 0
    for result in job.results():
        row = rows[int(result.custom_id[1:])]
        on_flagship = result.model_used == FLAGSHIP
        flagship += on_flagship
        correct += row[STRONG if on_flagship else WEAK] == "True"
        escalated += bool(result.route and result.route.escalated)
    n = len(rows)
    return {
        "requests": n,
        "succeeded": job.counts.succeeded,
        "cost_micros": job.cost_micros,
        "accuracy": round(correct / n, 4),
        "flagship_share": round(flagship / n, 4),
        "escalation_rate": round(escalated / n, 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/routing")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = questions(args.data, args.limit)
    with tempfile.TemporaryDirectory(prefix="ib-bench-cost-") as tmp:
        config = Path(tmp) / "broker.toml"
        bench_config(config)
        settings = Settings(config_path=config, data_dir=Path(tmp) / "stack", api_port=free_port())
        with Stack(settings) as stack:
            sim = stack.env["BROKER_SIMULATOR_URL"]
            httpx.post(
                f"{sim}/_sim/config",
                json={
                    "replay_path": str(args.data / "gsm8k_responses.csv"),
                    "replay_weak_column": f"{WEAK}_response",
                    "replay_strong_column": f"{STRONG}_response",
                    "replay_strong_models": [FLAGSHIP],
                },
            ).raise_for_status()
            with BrokerClient(stack.api_url, "ib-dev-platform") as client:
                results = {mode: run_mode(client, model, rows) for mode, model in MODES.items()}
    base = results["all-flagship"]["cost_micros"] or 1
    for figures in results.values():
        figures["cost_reduction"] = round(1 - figures["cost_micros"] / base, 4)
    best = results["routed + cascade"]
    out = {
        "workload": "gsm8k",
        "questions": len(rows),
        "modes": results,
        "cost_reduction": best["cost_reduction"],
        "accuracy": best["accuracy"],
        "escalation_rate": best["escalation_rate"],
    }
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"GSM8K on recorded answers, {len(rows)} questions, through the stack")
    for column in ("mode", "cost", "vs all-flagship", "accuracy", "on flagship", "escalated"):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, f in results.items():
        table.add_row(
            mode,
            f"${f['cost_micros'] / 1e6:.4f}",
            f"-{f['cost_reduction']:.1%}",
            f"{f['accuracy']:.1%}",
            f"{f['flagship_share']:.1%}",
            f"{f['escalation_rate']:.1%}",
        )
    Console(width=120).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
