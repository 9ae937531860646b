"""Engine, sessions and migrations for the result store.

SQLite (the embedded default) runs in WAL mode with a generous busy timeout so the API, the
scheduler and every worker thread can share one file; PostgreSQL is used as-is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from tenacity import (
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
    wait_random,
)

from broker import jsontext

T = TypeVar("T")

MIGRATIONS = Path(__file__).parent / "migrations"


_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6
# PostgreSQL SQLSTATEs worth retrying: connection exceptions (class 08), serialization failure,
# deadlock, server shutting down, too many connections.
_PG_TRANSIENT = ("08", "40001", "40P01", "57P01", "57P02", "57P03", "53300")


def is_transient(exc: BaseException) -> bool:
    """Would the same transaction succeed if tried again shortly?

    A lost or refused connection, an exhausted pool, SQLite busy or locked, a PostgreSQL
    deadlock or serialization failure: yes. A missing table or a syntax error (which SQLite
    also reports as ``OperationalError``): no, and it must surface at once.
    """
    if isinstance(exc, (PoolTimeout, WriteConflict)):
        return True
    if not isinstance(exc, OperationalError):
        return False
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    sqlite_code = getattr(orig, "sqlite_errorcode", None)
    if sqlite_code is not None:
        return sqlite_code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is None:  # psycopg: failed to connect at all (refused, too many clients)
        return type(orig).__module__.startswith("psycopg")
    return sqlstate.startswith(_PG_TRANSIENT)


class WriteConflict(Exception):
    """Raised inside :meth:`Database.write` work when another writer changed a row between a
    read and a write: the transaction rolls back and is retried, and then sees the change."""


def normalise_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, the driver we ship."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=60000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_engine(url: str, pool_size: int = 5) -> Engine:
    url = normalise_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": 60, "check_same_thread": False},
            json_serializer=jsontext.dumps,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # No overflow: a pool of threads waits for a connection rather than exhausting the server's
    # max_connections (PostgreSQL's default of 100 is shared by every process of the broker).
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=60,
        pool_pre_ping=True,
        json_serializer=jsontext.dumps,
    )


class Database:
    """One engine and its session factory; create one per process."""

    def __init__(self, url: str, pool_size: int = 5) -> None:
        self.url = normalise_url(url)
        self.engine = make_engine(self.url, pool_size=pool_size)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session in a transaction: committed on success, rolled back on any error."""
        with self._sessions.begin() as session:
            yield session

    def write(self, work: Callable[[Session], T], *, give_up_after_s: float = 60.0) -> T:
        """Run ``work`` in a transaction, retried with backoff on transient failures (connection
        lost or refused, pool exhausted, SQLite busy).

        Only for work made of conditional state transitions, which are safe to repeat: if a
        commit succeeded but its answer was lost, the retry finds nothing left to change.
        """
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential(multiplier=0.05, max=5.0) + wait_random(0, 0.05),
            stop=stop_after_delay(give_up_after_s),
            reraise=True,
        )
        for attempt in retrying:
            with attempt, self.session() as session:
                return work(session)
        raise AssertionError("unreachable")  # pragma: no cover - Retrying reraises

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision (idempotent)."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def dispose(self) -> None:
        self.engine.dispose()
