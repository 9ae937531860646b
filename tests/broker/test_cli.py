"""The command line as a user runs it: real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete

from broker.config.broker_toml import load_config
from broker.local.processes import free_port, start_api
from broker.local.stack import settings_env
from broker.store import TeamSetting

CLI = [sys.executable, "-m", "broker.cli"]


def processes_with_env(marker: str) -> list[int]:
    """Pids whose environment contains ``marker`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.skipif(not Path("/proc").exists(), reason="needs /proc to find the children")
def test_up_runs_the_stack_and_ctrl_c_stops_all_of_it(tmp_path):
    port = free_port()
    marker = f"BROKER_DATA_DIR={tmp_path}"
    env = {**os.environ, "BROKER_DATA_DIR": str(tmp_path), "BROKER_API_PORT": str(port)}
    env.pop("REDIS_URL", None)
    env.pop("DATABASE_URL", None)
    up = subprocess.Popen([*CLI, "up"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert up.poll() is None, up.stderr.read()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the API did not come up"
            time.sleep(0.2)
        assert len(processes_with_env(marker)) >= 6, "api, scheduler, 2 workers, simulator, up"
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    finally:
        if up.poll() is None:
            up.kill()
    assert "stopped" in up.stderr.read()
    time.sleep(0.5)
    assert processes_with_env(marker) == [], "every process it started is gone"
    (redis_log,) = tmp_path.glob("redis/redis.log")
    assert redis_log.exists(), "a private Redis was started for it"


@pytest.mark.parametrize("command", [["api"], ["scheduler"], ["worker", "--provider", "x"]])
def test_an_invalid_config_stops_a_process_at_start_with_file_key_and_reason(tmp_path, command):
    config = tmp_path / "broker.toml"
    default = Path(__file__).parents[2] / "broker" / "config" / "defaults" / "broker.toml"
    config.write_text(
        default.read_text().replace('provider = "sim-anthropic"', 'provider = "nope"', 1)
    )
    env = {**os.environ, "BROKER_CONFIG_PATH": str(config), "BROKER_DATA_DIR": str(tmp_path)}
    done = subprocess.run([*CLI, *command], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    first = next(i for i, m in enumerate(load_config().models) if m.provider == "sim-anthropic")
    assert f"{config}: models[{first}].provider: unknown provider 'nope'" in done.stderr
    assert "Traceback" not in done.stderr


def test_keygen_prints_a_key_and_its_hash():
    done = subprocess.run([*CLI, "keygen"], capture_output=True, text=True, timeout=60, check=True)
    key = done.stdout.split("shown once): ")[1].split()[0]
    import hashlib

    assert hashlib.sha256(key.encode()).hexdigest() in done.stdout


@pytest.fixture
def running_api(settings, redis_client, db, tmp_path):
    """``inference-broker api`` as a user runs it, on the test Redis and database."""
    db.write(lambda s: s.execute(delete(TeamSetting)))  # overrides from other tests
    api, url = start_api(settings_env(settings), tmp_path / "api.log")
    try:
        yield url
    finally:
        api.stop()
        db.write(lambda s: s.execute(delete(TeamSetting)))


def table_rows(stdout: str) -> dict[str, list[str]]:
    """team → cells of a rich table printed by ``teams``."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in ("content", "platform", "product"):
            rows[cells[0]] = cells
    return rows


def test_breakers_shows_states_and_transitions_against_a_running_api(
    running_api, redis_client, settings
):
    from workers.breakers import Breakers

    breakers = Breakers(redis_client, settings.config)
    for _ in range(settings.config.breakers.min_calls):
        breakers.record("sim-openai", "gpt-4o-mini", "failure")
    env = {**os.environ, "BROKER_URL": running_api, "BROKER_ADMIN_KEY": "ib-dev-admin"}
    done = subprocess.run(
        [*CLI, "breakers"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert "open" in rows["provider:sim-openai"] and "closed" in rows["provider:sim-anthropic"]
    reason = "failure rate 1.00 over 5 s (5 calls)"
    assert f"provider:sim-openai: closed → open ({reason})" in done.stdout


def test_teams_lists_and_sets_weights_against_a_running_api(running_api):
    def teams(*args: str, key: str = "ib-dev-admin") -> subprocess.CompletedProcess:
        env = {**os.environ, "BROKER_URL": running_api, "BROKER_ADMIN_KEY": key}
        argv = [*CLI, "teams", *args]
        return subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    listed = teams()
    assert listed.returncode == 0, listed.stderr
    rows = table_rows(listed.stdout)
    assert sorted(rows) == ["content", "platform", "product"]
    assert rows["platform"][1] == "2" and rows["product"][1] == "1"

    changed = teams("set-weight", "platform", "3")
    assert changed.returncode == 0, changed.stderr
    assert table_rows(changed.stdout)["platform"][1] == "3*"
    assert table_rows(teams().stdout)["platform"][1] == "3*"

    reset = teams("reset-weight", "platform", "--url", running_api)
    assert reset.returncode == 0, reset.stderr
    assert table_rows(teams().stdout)["platform"][1] == "2"

    for done, words in [
        (teams(key="ib-dev-product"), "admin endpoints need the admin key"),
        (teams("set-weight", "nope", "2"), "no team 'nope'"),
        (teams("set-weight", "platform", "0"), "weight: Input should be greater than or equal"),
    ]:
        assert done.returncode == 1
        assert done.stderr.startswith("error: ") and words in done.stderr
        assert "Traceback" not in done.stderr


@pytest.fixture
def budget_api(settings, redis_client, db, tmp_path, budgets_toml):
    """``inference-broker api`` with the packaged broker.toml plus two budgets of product's."""
    from broker.config.broker_toml import DEFAULT_CONFIG
    from broker.store import BudgetLimit

    path = tmp_path / "broker.toml"
    path.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8") + budgets_toml, encoding="utf-8")
    db.write(lambda s: s.execute(delete(BudgetLimit)))
    api, url = start_api(settings_env(settings), tmp_path / "api.log", path)
    try:
        yield url
    finally:
        api.stop()
        db.write(lambda s: s.execute(delete(BudgetLimit)))


def admin_cli(url: str, *args: str, key: str = "ib-dev-admin") -> subprocess.CompletedProcess:
    env = {**os.environ, "BROKER_URL": url, "BROKER_ADMIN_KEY": key}
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def rows_by_first_cell(stdout: str, names: set[str]) -> dict[str, list[str]]:
    """first cell → cells of the rich table rows whose first cell is one of ``names``."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if cells and cells[0] in names:
            rows[cells[0]] = cells
    return rows


def test_budgets_lists_and_sets_limits_against_a_running_api(budget_api, redis_client):
    from datetime import UTC, datetime

    from broker import redis_keys

    ids = {"product/daily", "product/search/monthly"}
    window = datetime.now(UTC).strftime("d%Y%m%d")
    redis_client.hset(
        redis_keys.budget("product/daily", window),
        mapping={"spent": 250_000, "reserved": 50_000, "loaded": 1},
    )

    listed = admin_cli(budget_api, "budgets")
    assert listed.returncode == 0, listed.stderr
    rows = rows_by_first_cell(listed.stdout, ids)
    assert sorted(rows) == sorted(ids)
    assert rows["product/daily"] == [
        "product/daily", "daily", "$1.0000", "$0.2500", "$0.0500", "$0.7000", "30.0%",
    ]  # fmt: skip
    assert rows["product/search/monthly"][1:3] == ["monthly", "$5.0000"]
    assert "renews (UTC)" in listed.stdout

    changed = admin_cli(budget_api, "budgets", "set-limit", "product/daily", "$12.50")
    assert changed.returncode == 0, changed.stderr
    assert rows_by_first_cell(changed.stdout, ids)["product/daily"][2] == "$12.5000*"
    again = rows_by_first_cell(admin_cli(budget_api, "budgets").stdout, ids)
    assert again["product/daily"][2] == "$12.5000*" and again["product/daily"][6] == "2.4%"

    reset = admin_cli(budget_api, "budgets", "reset-limit", "product/daily", "--url", budget_api)
    assert reset.returncode == 0, reset.stderr
    again = rows_by_first_cell(admin_cli(budget_api, "budgets").stdout, ids)
    assert again["product/daily"][2] == "$1.0000"

    for done, words in [
        (admin_cli(budget_api, "budgets", key="ib-dev-product"), "need the admin key"),
        (admin_cli(budget_api, "budgets", "set-limit", "product/weekly", "2"), "no budget"),
        (
            admin_cli(budget_api, "budgets", "set-limit", "product/daily", "0"),
            "limit_usd: Input should be greater than 0",
        ),
    ]:
        assert done.returncode == 1
        assert done.stderr.startswith("error: ") and words in done.stderr
        assert "Traceback" not in done.stderr


def test_teams_pause_and_resume_against_a_running_api(running_api):
    teams = {"content", "platform", "product"}

    paused = admin_cli(running_api, "teams", "pause", "product", "--reason", "runaway agent")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == "product is paused: runaway agent"
    listed = admin_cli(running_api, "teams")
    rows = rows_by_first_cell(listed.stdout, teams)
    assert rows["product"][-1] == "paused" and rows["content"][-1] == ""
    assert "product is paused: runaway agent" in listed.stdout

    again = admin_cli(running_api, "teams", "pause", "product")
    assert again.stdout.strip() == "product is already paused: runaway agent"

    resumed = admin_cli(running_api, "teams", "resume", "product")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "product resumed"
    assert rows_by_first_cell(admin_cli(running_api, "teams").stdout, teams)["product"][-1] == ""
    assert admin_cli(running_api, "teams", "resume", "product").stdout.strip() == (
        "product was not paused"
    )

    alerts = admin_cli(running_api, "alerts", "--team", "product")
    assert alerts.returncode == 0, alerts.stderr
    assert "team product resumed by an operator" in alerts.stdout
    assert "team product paused: runaway agent" in alerts.stdout
    assert "no alerts" in admin_cli(running_api, "alerts", "--team", "content").stdout

    missing = admin_cli(running_api, "teams", "pause", "nope")
    assert missing.returncode == 1 and "no team 'nope'" in missing.stderr
