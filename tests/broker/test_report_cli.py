"""``inference-broker report`` as a user runs it: a real API process, the CLI in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from PIL import Image
from sqlalchemy import delete, select, update

from broker.local.processes import start_api
from broker.local.stack import settings_env
from broker.money import format_usd
from broker.schemas.http import JobCreate
from broker.store import Job, LedgerEntry, Request
from broker.submission import Submitter

CLI = [sys.executable, "-m", "broker.cli"]
NOW = datetime.now(UTC)
# team, feature, model, provider, cost_micros, days ago
CHARGES = [
    ("product", "chatbot", "gpt-4o-mini", "sim-openai", 125_000, 0),
    ("product", "chatbot", "claude-haiku-4-5", "sim-anthropic", 2_500_000, 1),
    ("product", "search", "gpt-4.1-nano", "sim-openai", 7, 2),
    ("content", "translation", "gpt-4o-mini", "sim-openai", 3_000_000, 0),
]
TOTAL = sum(c[4] for c in CHARGES)
PRODUCT_TOTAL = sum(c[4] for c in CHARGES if c[0] == "product")


@pytest.fixture
def ledger(db, redis_client, settings):
    """One job per charge, one ledger row each; the shared ledger is emptied around the test."""
    db.write(lambda s: s.execute(delete(LedgerEntry)))
    submitter = Submitter(db, redis_client, settings.config)
    for team, feature, model, provider, cost, days_ago in CHARGES:
        body = JobCreate(
            feature=feature,
            requests=[{"custom_id": "r0", "model": model, "messages": [{"role": "user",
                                                                        "content": "x"}]}],
        )  # fmt: skip
        job = submitter.submit(settings.config.team(team), body)
        with db.session() as s:
            rid = s.scalar(select(Request.id).where(Request.job_id == job.id))
            s.add(LedgerEntry(
                request_id=rid, attempt=1, job_id=job.id, team_id=team, feature=feature,
                model=model, provider=provider, input_tokens=1_000, cached_input_tokens=100,
                output_tokens=500, cost_micros=cost, cache_savings_micros=10,
                created_at=NOW - timedelta(days=days_ago),
            ))  # fmt: skip
    yield
    db.write(lambda s: s.execute(delete(LedgerEntry)))


@pytest.fixture
def running_api(settings, ledger, tmp_path):
    """``inference-broker api`` as a user runs it, on the test Redis and database."""
    api, url = start_api(settings_env(settings), tmp_path / "api.log")
    try:
        yield url
    finally:
        api.stop()


def run(url: str, *args: str, admin: str | None = None, team: str | None = None):
    env = {**os.environ, "BROKER_URL": url}
    for name, value in (("BROKER_ADMIN_KEY", admin), ("BROKER_API_KEY", team)):
        env.pop(name, None)
        if value is not None:
            env[name] = value
    return subprocess.run(
        [*CLI, "report", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def table_rows(stdout: str) -> dict[str, list[str]]:
    """First cell → cells, for each line of the rich table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0]:
            rows[cells[0]] = cells
    return rows


def test_report_prints_a_table_with_totals_and_writes_the_chart(running_api, tmp_path):
    done = run(running_api, admin="ib-dev-admin")
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout)
    assert rows["total"][:3] == ["total", "", ""]
    # cost, prompt-cache savings, cost avoided by response-cache hits (none here)
    assert rows["total"][-3:] == [format_usd(TOTAL), format_usd(10 * len(CHARGES)), format_usd(0)]
    assert rows["total"][3] == str(len(CHARGES)) and rows["total"][5] == f"{4 * 1_000:,}"
    assert {"product", "content"} <= set(rows) and "Spend by team, feature, model" in done.stdout

    by_team = table_rows(run(running_api, "--by", "team", admin="ib-dev-admin").stdout)
    assert by_team["product"][-3] == format_usd(PRODUCT_TOTAL)
    assert by_team["content"][-3] == format_usd(3_000_000)

    out = tmp_path / "charts" / "out.png"
    out.parent.mkdir()
    drawn = run(
        running_api, "--by", "feature", "--png", str(out), "--days", "7", team="ib-dev-product"
    )
    assert drawn.returncode == 0, drawn.stderr
    assert str(out) in drawn.stderr.replace("\n", "")
    features = table_rows(drawn.stdout)
    assert set(features) == {"chatbot", "search", "total"}, "product's own only"
    assert features["total"][-3] == format_usd(PRODUCT_TOTAL)
    image = Image.open(out)
    assert (image.format, image.size) == ("PNG", (1200, 600))


def test_report_as_csv_and_json(running_api):
    since = (NOW - timedelta(days=1)).date().isoformat()
    as_csv = run(running_api, "--format", "csv", "--by", "team,day", "--since", since,
                 admin="ib-dev-admin")  # fmt: skip
    assert as_csv.returncode == 0, as_csv.stderr
    header, *lines, total = list(csv.reader(io.StringIO(as_csv.stdout)))
    assert header[:2] == ["team", "day"] and total[:2] == ["total", ""]
    cost = header.index("cost_micros")
    assert sum(int(line[cost]) for line in lines) == int(total[cost]) == TOTAL - 7

    as_json = run(running_api, "--format", "json", "--team", "product", admin="ib-dev-admin")
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    assert body["team"] == "product" and body["totals"]["cost_micros"] == PRODUCT_TOTAL
    assert body["totals"]["cost_usd"] == format_usd(PRODUCT_TOTAL, places=6)


def test_report_errors_are_one_line(running_api):
    for done, words in [
        (run(running_api, "--by", "team,week", admin="ib-dev-admin"),
         "group_by: unknown dimension 'week'"),
        (run(running_api, "--team", "content", team="ib-dev-product"),
         "no team 'content' for this key"),
        (run(running_api, admin="ib-dev-wrong"), "unknown API key"),
        (run("http://127.0.0.1:9", admin="ib-dev-admin"), "cannot reach the broker"),
    ]:  # fmt: skip
        assert done.returncode == 1, done.stdout
        assert done.stderr.startswith("error: ") and words in done.stderr
        assert "Traceback" not in done.stderr
    keyless = run(running_api)
    assert keyless.returncode == 2 and "BROKER_ADMIN_KEY" in keyless.stderr


ROUTED_FEATURE = "cli-routes"  # no other test routes it
FLAGSHIP = 25_000 + 200_000  # gpt-4o: 10,000 tokens in at $2.50 and 20,000 out at $10 per 1M


@pytest.fixture
def routed_requests(db, redis_client, settings):
    """Route ``auto`` answered for product (r0 escalated to the flagship and charged for both
    tiers, r1 on the small tier, r2 on the flagship) and content (one on the small tier); each
    request 10,000 tokens in and 20,000 out. The jobs are deleted afterwards."""
    submitter = Submitter(db, redis_client, settings.config)
    jobs = []
    for team, tiers in (("product", [0, 0, 1]), ("content", [0])):
        body = JobCreate(
            feature=ROUTED_FEATURE,
            requests=[{"custom_id": f"r{i}", "model": "auto", "metadata": {"tier": tier},
                       "messages": [{"role": "user", "content": f"x {i}"}]}
                      for i, tier in enumerate(tiers)],
        )  # fmt: skip
        jobs.append(submitter.submit(settings.config.team(team), body).id)
    with db.session() as s:
        for row in s.scalars(select(Request).where(Request.job_id.in_(jobs))).all():
            decision = dict(row.route_decision)
            escalated = row.team_id == "product" and row.custom_id == "r0"
            if escalated:
                decision.update(tier=1, model="gpt-4o", escalated=True)
            s.execute(
                update(Request).where(Request.id == row.id)
                .values(status="succeeded", input_tokens=10_000, cached_input_tokens=0,
                        output_tokens=20_000, cost_micros=150_000 if escalated else 100_000,
                        route_decision=decision, finished_at=NOW)
            )  # fmt: skip
        s.commit()
    yield
    db.write(lambda s: s.execute(delete(Job).where(Job.id.in_(jobs))))


def route_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """(team, feature) → cells, for each line of the routes table; the totals line as
    ("", "total")."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 10 and cells[0] not in ("", "route"):
            rows[(cells[1], cells[2]) if cells[0] != "total" else ("", "total")] = cells
    return rows


def test_report_routes_prints_tier_mix_escalations_and_the_flagship_counterfactual(
    routed_requests, running_api
):
    done = run(running_api, "routes", admin="ib-dev-admin")
    assert done.returncode == 0, done.stderr
    assert "Routes: every team this key sees, all time" in done.stdout
    rows = route_rows(done.stdout)
    assert rows[("product", ROUTED_FEATURE)] == [
        "auto", "product", ROUTED_FEATURE, "gpt-4o-mini: 1; gpt-4o: 2", "3", "1 (33.3%)", "0",
        format_usd(350_000), format_usd(3 * FLAGSHIP), "48.1%",
    ]  # fmt: skip
    assert rows[("content", ROUTED_FEATURE)][3:] == [
        "gpt-4o-mini: 1", "1", "0 (0.0%)", "0", format_usd(100_000), format_usd(FLAGSHIP), "55.6%",
    ]  # fmt: skip
    total = rows[("", "total")]
    groups = [cells for key, cells in rows.items() if key != ("", "total")]
    assert int(total[4].replace(",", "")) == sum(int(c[4].replace(",", "")) for c in groups)

    own = route_rows(run(running_api, "routes", team="ib-dev-content").stdout)
    assert {team for team, _ in own if team} == {"content"}, "a team's key sees its own"
    narrowed = run(running_api, "--team", "product", "routes", admin="ib-dev-admin")
    assert "Routes: team product" in narrowed.stdout, "report's --team carries to routes"
    assert {team for team, _ in route_rows(narrowed.stdout) if team} == {"product"}


def test_report_routes_as_json(routed_requests, running_api):
    done = run(running_api, "routes", "--format", "json", "--team", "product",
               admin="ib-dev-admin")  # fmt: skip
    assert done.returncode == 0, done.stderr
    routes = json.loads(done.stdout)["routes"]
    (mine,) = [r for r in routes if r["feature"] == ROUTED_FEATURE]
    assert {r["team"] for r in routes} == {"product"}
    assert mine["by_model"] == {"gpt-4o-mini": 1, "gpt-4o": 2} and mine["by_tier"] == {
        "0": 1, "1": 2,
    }  # fmt: skip
    assert (mine["escalated"], mine["cost_micros"], mine["flagship_cost_micros"]) == (
        1, 350_000, 3 * FLAGSHIP,
    )  # fmt: skip


def test_report_routes_errors_are_one_line(running_api):
    for done, words in [
        (run(running_api, "routes", "--team", "content", team="ib-dev-product"),
         "no team 'content' for this key"),
        (run(running_api, "routes", admin="ib-dev-wrong"), "unknown API key"),
        (run("http://127.0.0.1:9", "routes", admin="ib-dev-admin"), "cannot reach the broker"),
    ]:  # fmt: skip
        assert done.returncode == 1, done.stdout
        assert done.stderr.startswith("error: ") and words in done.stderr
        assert "Traceback" not in done.stderr
    keyless = run(running_api, "routes")
    assert keyless.returncode == 2 and "BROKER_ADMIN_KEY" in keyless.stderr
