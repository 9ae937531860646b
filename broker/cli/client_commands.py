"""Client commands: ``submit``, ``status`` and ``results`` against a running broker."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click
from pydantic import ValidationError
from rich.console import Console

from broker.client import BrokerClient, Job, RequestIn
from broker.errors import field_path
from broker.states import Priority

console = Console(stderr=True)

_url = click.option(
    "--url",
    envvar="BROKER_URL",
    default="http://127.0.0.1:8140",
    show_default=True,
    help="The broker's API (env BROKER_URL).",
)
_key = click.option(
    "--api-key",
    envvar="BROKER_API_KEY",
    required=True,
    help="Your team's key (env BROKER_API_KEY).",
)


def read_jsonl(path: Path) -> tuple[list[RequestIn], list[str]]:
    """Valid requests and one message per bad line: a malformed line fails that line only.

    A line is a request object (``custom_id``, ``messages``, ``model``, ...) or an OpenAI Batch
    API line (``{"custom_id", "method", "url", "body": {...}}``).
    """
    requests, problems = [], []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if isinstance(data, dict) and "body" in data:
                    data = {"custom_id": data.get("custom_id"), **data["body"]}
                requests.append(RequestIn.model_validate(data))
            except json.JSONDecodeError as exc:
                problems.append(f"line {number}: not JSON ({exc.msg} at column {exc.colno})")
            except ValidationError as exc:
                first = exc.errors()[0]
                where = field_path(first["loc"]) or "line"
                problems.append(f"line {number}: {where}: {first['msg']}")
    return requests, problems


def _print_job(job: Job) -> None:
    counts = job.counts
    console.print(
        f"{job.id}  {job.status.value}  {counts.total - counts.pending}/{counts.total} done "
        f"({counts.succeeded} ok, {counts.failed} failed, {counts.cancelled} cancelled)  "
        f"cost {job.cost_usd}"
    )


def register(main: click.Group) -> None:
    @main.command()
    @click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
    @click.option("--feature", required=True, help="The feature this batch serves.")
    @click.option(
        "--priority",
        type=click.Choice([p.value for p in Priority]),
        default="medium",
        show_default=True,
    )
    @click.option("--wait/--no-wait", default=False, help="Wait with a progress bar.")
    @_url
    @_key
    def submit(file: Path, feature: str, priority: str, wait: bool, url: str, api_key: str) -> None:
        """Submit FILE.jsonl as one job; bad lines are reported and left out."""
        requests, problems = read_jsonl(file)
        for problem in problems:
            console.print(f"[yellow]skipped[/] {problem}")
        if not requests:
            raise click.ClickException(f"no valid requests in {file}")
        with BrokerClient(url, api_key) as client:
            job = client.submit_batch(requests, feature=feature, priority=priority)
            console.print(f"submitted {len(requests)} requests as {job.id}")
            if problems:
                console.print(f"[yellow]{len(problems)} line(s) were not submitted[/]")
            if wait:
                job.wait(progress=True)
            _print_job(job)
        click.echo(job.id)

    @main.command()
    @click.argument("job_id")
    @_url
    @_key
    def status(job_id: str, url: str, api_key: str) -> None:
        """Show a job's status, counts and cost."""
        with BrokerClient(url, api_key) as client:
            _print_job(client.get_job(job_id))

    @main.command()
    @click.argument("job_id")
    @_url
    @_key
    def results(job_id: str, url: str, api_key: str) -> None:
        """Print a job's results as JSON lines on stdout."""
        with BrokerClient(url, api_key) as client:
            for result in client.results_jsonl(job_id):
                sys.stdout.write(result.model_dump_json() + "\n")
