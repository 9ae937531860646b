#!/usr/bin/env python3
"""What routing and cascades save, on recorded model answers, through the real stack.

    python scripts/bench_cost.py [--data ../shared/data/routing] [--limit N] [--json]
    python scripts/bench_cost.py --workload eight-features [--requests 2000] [--json]

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

``--workload eight-features`` generates traffic shaped like the reference company's (eight
features over three teams; 60% simple, 30% medium, 10% hard; repeats and reworded repeats in
chatbot and search), marks each request's difficulty, and runs it twice: every request on the
flagship with the cache off (what teams paid before the broker), and every request on route
``auto`` with the default cache policies. It reports the cost reduction, hits, the tier mix,
and how many requests marked hard ended on the small tier without a cascade check accepting
their answer (``hard_on_small_unvalidated``).
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

from broker.client import BrokerClient
from broker.config.broker_toml import load_config
from broker.config.settings import Settings
from broker.local.processes import free_port
from broker.local.stack import Stack

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


FEATURES = {  # feature → (team, max_tokens, simple, medium, hard prompt templates)
    "chatbot": (
        "ib-dev-product",
        200,
        "How do I {x}?",
        "My order {n} arrived late and I want to {x}; what are my options?",
        "Compare every plan you offer for a team of {n} that needs to {x}, with costs, limits and migration steps, in a table.",
    ),
    "search": (
        "ib-dev-product",
        60,
        "best way to {x}",
        "how to {x} when the account has {n} users",
        "Rewrite into a boolean search query with synonyms: people who need to {x} across {n} regions",
    ),
    "classification": (
        "ib-dev-product",
        8,
        "Label the ticket: cannot {x}.",
        "Label the ticket (billing, bug, how-to): customer {n} says they cannot {x} since Monday.",
        "Label with all that apply and give the policy clause: customer {n} cannot {x} and threatens to leave.",
    ),
    "summarization": (
        "ib-dev-content",
        150,
        "Summarise: we need to {x}.",
        "Summarise the meeting notes: team {n} discussed how to {x} and agreed on a plan.",
        "Summarise the attached {n}-page incident report on failing to {x}, with root causes and actions.",
    ),
    "translation": (
        "ib-dev-content",
        200,
        "Translate to German: I want to {x}.",
        "Translate to German, keeping the tone: our customer {n} asked how to {x}.",
        "Translate this contract clause to German with legal precision: the party shall {x} within {n} days.",
    ),
    "content-moderation": (
        "ib-dev-content",
        8,
        "Is this post safe? I love to {x}.",
        "Is this post safe? User {n}: I will {x} no matter what.",
        "Moderate with the policy section: user {n} posted a thread urging others to {x}.",
    ),
    "code-generation": (
        "ib-dev-platform",
        600,
        "Write a Python function to {x}.",
        "Write a tested Python function to {x} for {n} records.",
        "Refactor for speed and explain:\n```python\ndef run(records):\n    # {x} for {n} records\n    return [r for r in records if r]\n```",
    ),
    "data-extraction": (
        "ib-dev-platform",
        150,
        "Extract the date: we {x} on May {n}.",
        "Extract name, date and amount as JSON: invoice {n} to {x}.",
        "Extract every party, amount and deadline as JSON from contract {n} about how to {x}.",
    ),
}
TASKS = ("reset my password", "export my data", "change my plan", "close my account",
         "add a user", "get a refund", "update billing", "enable two-factor login")  # fmt: skip


def eight_features(n: int, seed: int = 7) -> list[tuple[str, str, dict, str]]:
    """(team key, feature, request, difficulty) for ``n`` requests."""
    import random

    rng = random.Random(seed)
    out, asked = [], {"chatbot": [], "search": []}
    features = list(FEATURES)
    for i in range(n):
        feature = features[i % len(features)]
        key, max_tokens, *templates = FEATURES[feature]
        roll = rng.random()
        difficulty = "simple" if roll < 0.6 else ("medium" if roll < 0.9 else "hard")
        text = templates[("simple", "medium", "hard").index(difficulty)].format(
            x=rng.choice(TASKS), n=rng.randrange(1, 60)
        )
        if feature in asked and asked[feature] and rng.random() < 0.4:  # repeats, reworded too
            text, difficulty = rng.choice(asked[feature])
            if rng.random() < 0.3:
                text = text.lower().rstrip("?.")
        elif feature in asked:
            asked[feature].append((text, difficulty))
        if difficulty == "hard":
            max_tokens *= 4
        request = {"custom_id": f"r{i}", "max_tokens": max_tokens,
                   "messages": [{"role": "user", "content": text}]}  # fmt: skip
        out.append((key, feature, request, difficulty))
    return out


def run_eight_features(stack: Stack, n: int) -> dict:
    traffic = eight_features(n)
    modes = {}
    for mode, model, cache in (
        ("all-flagship", FLAGSHIP, {"read": False, "store": False}),
        ("broker: route auto + cache", "auto", None),
    ):
        cost = hits = small = hard_unvalidated = hard_small = 0
        for key in sorted({k for k, *_ in traffic}):
            for feature in FEATURES:
                mine = [(r, d) for k, f, r, d in traffic if k == key and f == feature]
                if not mine:
                    continue
                batch = [
                    {**r, "model": model, **({"cache": cache} if cache else {})} for r, _ in mine
                ]
                with BrokerClient(stack.api_url, key) as client:
                    job = client.submit_batch(batch, feature=feature)
                    job.wait(timeout=1800, poll_interval=0.5)
                    cost += job.cost_micros
                    difficulty = {r["custom_id"]: d for r, d in mine}
                    for result in job.results():
                        hits += result.cache is not None
                        on_small = (
                            result.model_used in (SMALL, None) or result.model_used != FLAGSHIP
                        )
                        small += on_small
                        if on_small and difficulty[result.custom_id] == "hard":
                            hard_small += 1
                            checked = result.route is not None and any(
                                c.accept for c in result.route.checks
                            )
                            hard_unvalidated += not checked and result.cache is None
        modes[mode] = {"cost_micros": cost, "cache_hits": hits, "small_tier_share": round(small / n, 4),
                       "hard_on_small": hard_small, "hard_on_small_unvalidated": hard_unvalidated}  # fmt: skip
    base = modes["all-flagship"]["cost_micros"] or 1
    broker = modes["broker: route auto + cache"]
    return {
        "workload": "eight-features",
        "requests": n,
        "modes": modes,
        "cost_reduction": round(1 - broker["cost_micros"] / base, 4),
        "cache_hits": broker["cache_hits"],
        "hard_on_small_unvalidated": broker["hard_on_small_unvalidated"],
        "escalation_rate": None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared/data/routing")
    parser.add_argument("--limit", type=int, default=None, help="first N questions only")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--workload", choices=("gsm8k", "eight-features"), default="gsm8k")
    parser.add_argument("--requests", type=int, default=2000, help="eight-features: how many")
    args = parser.parse_args(argv)
    if args.workload == "eight-features":
        return main_eight_features(args)
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


def main_eight_features(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="ib-bench-cost-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "stack", api_port=free_port())
        with Stack(settings) as stack:
            out = run_eight_features(stack, args.requests)
    if args.json:
        print(json.dumps(out, sort_keys=True))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Eight features, {args.requests} requests (60/30/10 simple/medium/hard)")
    for column in (
        "mode",
        "cost",
        "cache hits",
        "small tier",
        "hard on small",
        "of which unvalidated",
    ):
        table.add_column(column, justify="left" if column == "mode" else "right")
    for mode, f in out["modes"].items():
        table.add_row(mode, f"${f['cost_micros'] / 1e6:.4f}", f"{f['cache_hits']:,}",
                      f"{f['small_tier_share']:.1%}", str(f["hard_on_small"]),
                      str(f["hard_on_small_unvalidated"]))  # fmt: skip
    console = Console(width=120)
    console.print(table)
    console.print(f"cost reduction against all-flagship: {out['cost_reduction']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
