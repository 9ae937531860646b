"""Shared fixtures: a private Redis, private databases (SQLite and PostgreSQL), settings.

Nothing here touches the machine's shared services beyond creating and dropping one private
PostgreSQL database per test session.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from broker.config.settings import Settings
from broker.local.processes import RedisServer, free_port
from broker.store import Database

POSTGRES_ADMIN_URL = os.environ.get(
    "BROKER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def budgets_toml() -> str:
    """Two of product's budgets, to add to the packaged broker.toml: daily $1.00, and a monthly
    $5 for its search feature."""
    return """
[[budgets]]
team = "product"
limit_usd = "1.00"

[[budgets]]
team = "product"
feature = "search"
window = "monthly"
limit_usd = "5"
"""


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client on the private server, emptied before each test (it is ours alone)."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.close()


def _postgres_database(fallback: str | None = None) -> Iterator[str]:
    """A private PostgreSQL database, dropped afterwards; when none can be made, ``fallback``
    if given, else the test skips saying why."""
    try:
        import psycopg  # noqa: F401 - the driver must be installed
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            name = f"ib_test_{secrets.token_hex(4)}"
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # no server, no driver, no rights
        if fallback is not None:
            yield fallback
            return
        pytest.skip(
            f"PostgreSQL not reachable at {POSTGRES_ADMIN_URL} ({type(exc).__name__}); "
            "set BROKER_TEST_POSTGRES_URL to run these tests on PostgreSQL"
        )
        return
    url = make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request, tmp_path_factory) -> Iterator[str]:
    """Each test using this runs on SQLite and on a private PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'broker.db'}"
    else:
        yield from _postgres_database()


def _fresh(database_url: str, tmp_path_factory) -> Iterator[str]:
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'broker.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def fresh_database_url(database_url: str, tmp_path_factory) -> Iterator[str]:
    """An empty database of ``database_url``'s kind, for one test's stack. The scheduler runs
    whatever the database says is queued or in flight, so a stack must not share the rows other
    tests leave behind in the session's database."""
    yield from _fresh(database_url, tmp_path_factory)


@pytest.fixture(scope="module")
def module_database_url(database_url: str, tmp_path_factory) -> Iterator[str]:
    """:func:`fresh_database_url` shared by one module's stack."""
    yield from _fresh(database_url, tmp_path_factory)


@pytest.fixture
def production_database_url(tmp_path) -> Iterator[str]:
    """One empty database for a long end-to-end run that needs one, not both kinds: a private
    PostgreSQL database (what production runs) when one is reachable, else a SQLite file."""
    yield from _postgres_database(fallback=f"sqlite:///{tmp_path / 'broker.db'}")


@pytest.fixture(scope="session")
def migrated_database_url(database_url: str) -> str:
    db = Database(database_url)
    db.migrate()
    db.dispose()
    return database_url


@pytest.fixture
def db(migrated_database_url: str) -> Iterator[Database]:
    database = Database(migrated_database_url)
    yield database
    database.dispose()


@pytest.fixture
def settings(tmp_path: Path, redis_server: RedisServer, migrated_database_url: str) -> Settings:
    return Settings(
        redis_url=redis_server.url,
        database_url=migrated_database_url,
        data_dir=tmp_path / "data",
        api_port=free_port(),
    )
