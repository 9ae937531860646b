"""docker-compose.yml runs what ``inference-broker up`` runs: one service per process, a worker
service per provider of the packaged broker.toml, commands the CLI has, nothing started before
what it needs is healthy. No Docker engine runs here; ``docker-compose config`` (Debian's
docker-compose package) validates the file when it is installed."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from broker.cli import main
from broker.config.broker_toml import load_config
from broker.config.settings import Settings

ROOT = Path(__file__).parents[1]
COMPOSE = ROOT / "docker-compose.yml"


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def argv(service: dict) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def broker_services(services: dict[str, dict]) -> dict[str, dict]:
    """The services built from this repository (the image's entrypoint is inference-broker)."""
    return {name: s for name, s in services.items() if "build" in s}


def dependencies(service: dict) -> dict[str, str]:
    """``{service: condition}``; the short list form means only "started"."""
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return {name: "service_started" for name in depends}
    return {name: spec.get("condition", "service_started") for name, spec in depends.items()}


def test_every_provider_of_the_default_config_has_a_worker_service(services):
    workers = [argv(s) for s in broker_services(services).values() if argv(s)[:1] == ["worker"]]
    for provider in load_config(None).providers:
        assert ["worker", "--provider", provider.name] in workers, provider.name


def test_services_run_the_processes_up_runs_with_commands_the_cli_has(services):
    ours = broker_services(services)
    commands = {argv(s)[0] for s in ours.values()}
    assert {"api", "scheduler", "worker", "simulate", "flower"} <= commands
    for name, service in ours.items():
        args = argv(service)
        assert args[0] in main.commands, f"{name}: `inference-broker {args[0]}` does not exist"
        command = main.commands[args[0]]
        command.make_context(args[0], args[1:])  # the options parse as the CLI would take them
    by_command = {argv(s)[0]: argv(s) for s in ours.values()}
    assert by_command["simulate"] == ["simulate", "--host", "0.0.0.0", "--port", "8765"]
    assert by_command["flower"][:3] == ["flower", "--address", "0.0.0.0"]


def test_environment_names_are_settings_and_point_at_the_compose_services(services):
    known = {f"BROKER_{name.upper()}" for name in Settings.model_fields}
    for name, service in broker_services(services).items():
        env = service.get("environment") or {}
        assert isinstance(env, dict), f"{name}: environment as a mapping"
        unknown = {k for k in env if k.startswith("BROKER_")} - known
        assert not unknown, f"{name}: not settings: {unknown}"
        assert env["BROKER_REDIS_URL"].startswith("redis://redis:")
        assert env["BROKER_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:" in env["BROKER_DATABASE_URL"]
        assert env["BROKER_SIMULATOR_URL"] == "http://simulator:8765"
        assert "BROKER_TASK_EVENTS" in env, f"{name}: workers and Flower must agree on events"
    assert services["api"]["environment"]["BROKER_API_HOST"] == "0.0.0.0"
    assert "BROKER_FLOWER_BASIC_AUTH" in services["flower"]["environment"]


def test_each_service_is_healthchecked_or_waits_for_healthy_ones(services):
    depended_on = {dep for s in services.values() for dep in dependencies(s)}
    for name, service in services.items():
        deps = dependencies(service)
        assert "healthcheck" in service or deps, f"{name}: no healthcheck and waits for nothing"
        for dep, condition in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert condition == "service_healthy", f"{name} should wait for {dep} to be healthy"
    for name in depended_on:
        assert "healthcheck" in services[name], f"others wait for {name}: it needs a healthcheck"
    for name in ("redis", "postgres", "simulator", "api", "flower"):
        assert "healthcheck" in services[name], name
    for name, service in services.items():
        if argv(service)[:1] in (["scheduler"], ["worker"]):
            assert dependencies(service).get("api") == "service_healthy", (
                f"{name}: the API migrates the schema; wait for it"
            )


def test_docker_compose_accepts_the_file():
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip(
            "no docker-compose on PATH (Debian: apt-get install docker-compose) to validate "
            "the file with `docker-compose config -q`; the checks above still ran"
        )
    done = subprocess.run(
        [binary, "-f", str(COMPOSE), "config", "-q"],
        cwd=ROOT,
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
