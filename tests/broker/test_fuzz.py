"""Fuzzing the HTTP API from its own OpenAPI schema (schemathesis), on a real Redis and a real
database (SQLite and PostgreSQL): whatever the schema lets a caller send, and what it does not,
no answer is a 5xx.

Every call carries a valid key (the admin key on ``/v1/admin``, a team's key elsewhere), and
about half the generated path parameters and models are swapped for ones that exist (a job, a
run-time key, a team, a budget, a known model), so the generated bodies and parameters reach the
handlers and the database instead of stopping at 401, 404 or "unknown model".

The run is bounded (``max_examples`` per operation, plus schemathesis's deterministic coverage
cases) and derandomized, so it generates the same cases on every run: about 2,900 cases over
both databases, under half a minute on two cores.

Two checks: no answer is a 5xx (``not_a_server_error``), and every answer matches the response
schema the API publishes (``response_schema_conformance``; it found SQLite's job times coming
back without a UTC offset, fixed in the store's datetime type).

The schema is taken from the app object (what ``/openapi.json`` serves) rather than with
``schemathesis.pytest.from_fixture``, which does not work under pytest 9 (it sets
``node._nodeid``).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.python import asgi

from broker.api import create_app
from broker.config.broker_toml import DEFAULT_CONFIG
from broker.config.settings import Settings
from broker.store import Database

TEAM = {"Authorization": "Bearer ib-dev-product"}
ADMIN = {"Authorization": "Bearer ib-dev-admin"}
MODEL = "gpt-4o-mini"

# The schema FastAPI serves at /openapi.json; building it needs no Redis or database.
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@dataclass(frozen=True)
class Fuzzed:
    """The app under test and things that exist in it, to aim path parameters at."""

    app: Any
    known: dict[str, str]


@pytest.fixture(scope="module")
def fuzzed(
    module_database_url: str,
    redis_server,
    tmp_path_factory: pytest.TempPathFactory,
    budgets_toml: str,
) -> Iterator[Fuzzed]:
    """One app per database kind, on a database of its own: the fuzzer pauses teams and
    overrides weights and limits, which other tests' shared database must not see."""
    db = Database(module_database_url)
    db.migrate()
    db.dispose()
    data_dir = tmp_path_factory.mktemp("fuzz")
    config_path = data_dir / "broker.toml"
    config_path.write_text(DEFAULT_CONFIG.read_text(encoding="utf-8") + budgets_toml, "utf-8")
    app = create_app(
        Settings(
            config_path=config_path,
            redis_url=redis_server.url,
            database_url=module_database_url,
            data_dir=data_dir,
            submissions_per_minute=0,  # a 429 would stop bodies before the handler
        )
    )
    # The ASGI client runs the app's lifespan (its Redis and database clients) and keeps it for
    # every later call to this app, until shut down below.
    with asgi.get_client(app) as client:
        job = client.post(
            "/v1/jobs",
            json={
                "feature": "search",
                "requests": [
                    {
                        "custom_id": "a",
                        "model": MODEL,
                        "messages": [{"role": "user", "content": "hi"}],
                    }
                ],
            },
            headers=TEAM,
        )
        key = client.post("/v1/admin/teams/product/keys", headers=ADMIN)
    assert job.status_code == 201 and key.status_code == 201, (job.text, key.text)
    known = {
        "job_id": job.json()["id"],
        "key_id": key.json()["id"],
        "team_id": "product",
        "budget_id": "product/search/monthly",
    }
    yield Fuzzed(app=app, known=known)
    asgi.shutdown_lifespans()


def _heads(value: Any) -> bool:
    """A fair, deterministic coin from a generated value (derandomized runs stay repeatable)."""
    return zlib.crc32(repr(value).encode()) % 2 == 0


def aim(case, known: dict[str, str]) -> None:
    """Swap about half the path parameters for existing ones, and the models of about half
    the submissions for a known one with distinct custom_ids, so the handler gets past its
    lookups; the other half keep what was generated."""
    if case.path_parameters:
        case.path_parameters = {
            name: known[name] if name in known and _heads(value) else value
            for name, value in case.path_parameters.items()
        }
    body = case.body
    if case.method == "POST" and case.path == "/v1/jobs" and _heads(body):
        requests = body.get("requests") if isinstance(body, dict) else None
        if isinstance(requests, list):
            for i, request in enumerate(requests):
                if isinstance(request, dict):
                    request["model"] = MODEL
                    if isinstance(request.get("custom_id"), str):
                        request["custom_id"] = f"{request['custom_id']}-{i}"


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors(case, fuzzed: Fuzzed, redis_client) -> None:
    # redis_client: each operation starts on an empty Redis (queues, alerts, rate limits)
    aim(case, fuzzed.known)
    headers = ADMIN if case.path.startswith("/v1/admin") else TEAM
    case.call_and_validate(
        app=fuzzed.app, headers=headers, checks=[not_a_server_error, response_schema_conformance]
    )
