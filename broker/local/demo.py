"""``inference-broker demo``: the whole stack on embedded defaults, one demo batch, the bill.

Three teams submit one job per feature they own (eight features in all), the run is followed
with a progress bar, and spend is printed by team, feature and model from the cost ledger.
"""

from __future__ import annotations

import random
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from broker.client import BrokerClient, Job
from broker.config.settings import Settings
from broker.local.sdk_demo import run_sdk_demo
from broker.local.stack import Stack
from broker.money import format_usd
from broker.store import Database
from broker.store.reports import spend

# The development keys of the default broker.toml (public, for the demo only).
DEMO_TEAMS = {
    "product": ("ib-dev-product", ("chatbot", "search", "classification")),
    "content": ("ib-dev-content", ("summarization", "translation", "content-moderation")),
    "platform": ("ib-dev-platform", ("code-generation", "data-extraction")),
}

# Per feature: the models it uses, typical max_tokens and a prompt template.
FEATURES = {
    "chatbot": (("gpt-4o-mini", "claude-haiku-4-5"), 300, "Customer asks: {topic}. Reply kindly."),
    "search": (("gpt-4.1-nano",), 120, "Rewrite the search query '{topic}' into keywords."),
    "classification": (("gpt-4.1-nano", "gpt-4o-mini"), 16, "Label the ticket: {topic}."),
    "summarization": (
        ("claude-haiku-4-5", "gpt-4o-mini"),
        250,
        "Summarise this report on {topic}.",
    ),
    "translation": (("gpt-4o-mini",), 400, "Translate to German: a note about {topic}."),
    "content-moderation": (("gpt-4.1-nano",), 8, "Is this post safe? Post: {topic}"),
    "code-generation": (
        ("claude-sonnet-4-5", "gpt-4.1"),
        800,
        "Write a Python function for {topic}.",
    ),
    "data-extraction": (("gpt-4.1-mini", "gemini-2.5-flash"), 200, "Extract fields from: {topic}."),
}

TOPICS = (
    "a late delivery",
    "refund policy",
    "password reset",
    "quarterly revenue",
    "a broken link",
    "parsing dates",
    "GDPR requests",
    "shipping to Norway",
    "a duplicate charge",
    "rate limits",
)


def demo_requests(feature: str, count: int, rng: random.Random) -> list[dict]:
    models, max_tokens, template = FEATURES[feature]
    requests = []
    for i in range(count):
        topic = rng.choice(TOPICS)
        requests.append(
            {
                "custom_id": f"{feature}-{i}",
                "model": models[i % len(models)],
                "max_tokens": max_tokens,
                "temperature": 0.3,
                "messages": [
                    {"role": "system", "content": f"You help the {feature} feature."},
                    {"role": "user", "content": template.format(topic=topic) * rng.randint(1, 6)},
                ],
                "priority": "high" if feature == "chatbot" else None,
            }
        )
    return requests


def submit_demo(api_url: str, total: int, seed: int = 7) -> list[Job]:
    rng = random.Random(seed)
    per_feature = max(1, total // len(FEATURES))
    jobs = []
    for key, features in DEMO_TEAMS.values():
        client = BrokerClient(api_url, key)
        for feature in features:
            job = client.submit_batch(
                demo_requests(feature, per_feature, rng), feature=feature, metadata={"demo": True}
            )
            jobs.append(job)
    return jobs


def follow(jobs: list[Job], console: Console, timeout: float = 600) -> None:
    total = sum(job.counts.total for job in jobs)
    columns = (
        TextColumn("[bold]draining"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[detail]}"),
    )
    deadline = time.monotonic() + timeout
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("demo", total=total, detail="")
        while True:
            for job in jobs:
                if not job.done:
                    job.refresh()
            done = sum(job.counts.total - job.counts.pending for job in jobs)
            failed = sum(job.counts.failed for job in jobs)
            progress.update(task, completed=done, detail=f"{failed} failed")
            if all(job.done for job in jobs) or time.monotonic() > deadline:
                return
            time.sleep(0.5)


def cost_table(db: Database, job_ids: list[str]) -> Table:
    table = Table(title="Spend by team, feature and model")
    for name in ("team", "feature", "model"):
        table.add_column(name)
    for name in ("requests", "input tokens", "output tokens", "cost"):
        table.add_column(name, justify="right")
    with db.session() as session:
        report = spend(session, group_by=("team", "feature", "model"), job_ids=job_ids)
    for row in report.rows:
        table.add_row(
            row.team,
            row.feature,
            row.model,
            f"{row.requests:,}",
            f"{row.input_tokens + row.cached_input_tokens:,}",
            f"{row.output_tokens:,}",
            format_usd(row.cost_micros),
        )
    totals = report.totals
    table.add_section()
    table.add_row(
        "total",
        "",
        "",
        f"{totals.requests:,}",
        f"{totals.input_tokens + totals.cached_input_tokens:,}",
        f"{totals.output_tokens:,}",
        format_usd(totals.cost_micros),
        style="bold",
    )
    return table


def run_demo(settings: Settings, total: int) -> None:
    console = Console()
    if not console.is_terminal:  # piped or captured: do not squeeze the table into 80 columns
        console.width = 120
    console.print(
        "[bold]starting the stack[/] (private Redis, SQLite, simulator, API, "
        "scheduler, one worker pool per provider)…"
    )
    with Stack(settings) as stack:
        console.print(f"up at {stack.api_url}; submitting ~{total} requests from three teams")
        jobs = submit_demo(stack.api_url, total)
        follow(jobs, console)
        db = Database(settings.database_url_or_default)
        console.print(cost_table(db, [job.id for job in jobs]))
        db.dispose()
        unfinished = [job.id for job in jobs if not job.done]
        if unfinished:
            console.print(f"[red]not finished in time:[/] {', '.join(unfinished)}")
        run_sdk_demo(stack.api_url, console)
        console.print("stopping the stack")
    console.print("[green]done[/]")
