"""Spend read from the cost ledger, the record of every charged attempt.

Everything here is one ``GROUP BY`` over ``cost_ledger``: the ledger is the only place money
is recorded, so every report (API, CLI, chart, ``demo``) adds up to the same totals.

Days are UTC calendar days on both backends. SQLite stores the UTC wall-clock time as text and
``date()`` cuts it; PostgreSQL stores ``timestamptz`` and a plain cast to ``date`` would use the
session's time zone, so the value is first moved to UTC with ``timezone('UTC', ...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Date, Select, cast, distinct, func, literal_column, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from broker.errors import InvalidRequest
from broker.store.models import LedgerEntry

DIMENSIONS = ("team", "feature", "model", "provider", "day")
DEFAULT_GROUP_BY = ("team", "feature", "model")


@dataclass(frozen=True, slots=True)
class SpendRow:
    """One group's sums. Dimensions the report was not grouped by are None.

    ``requests`` counts distinct requests and ``attempts`` charged attempts (one ledger row
    each): a request retried or sent on to a fallback model is one request with two attempts,
    and counts once in each model's row it touched but once in the total. ``cache_hits`` are
    requests answered from the response cache (a request, no attempt, charged 0), under the
    model whose answer they reused; ``cost_avoided_micros`` what those answers had cost.
    """

    requests: int
    attempts: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_micros: int
    cache_savings_micros: int
    cache_hits: int
    cost_avoided_micros: int
    team: str | None = None
    feature: str | None = None
    model: str | None = None
    provider: str | None = None
    day: date | None = None

    def key(self, group_by: Sequence[str]) -> dict[str, str | date | None]:
        """The row's value of each grouped dimension, in ``group_by`` order."""
        return {dim: getattr(self, dim) for dim in group_by}


@dataclass(frozen=True, slots=True)
class SpendReport:
    group_by: tuple[str, ...]
    team: str | None
    since: date | None
    until: date | None
    rows: list[SpendRow]
    totals: SpendRow


def parse_group_by(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"team, model"`` or ``["team", "model"]`` → ``("team", "model")``; repeats dropped.

    Raises ValueError naming the unknown dimension and the known ones: the API turns it into a
    422 on ``group_by`` and the store into :class:`InvalidRequest`.
    """
    parts = value.split(",") if isinstance(value, str) else list(value)
    dims = tuple(dict.fromkeys(p.strip() for p in parts if p.strip()))
    if not dims:
        raise ValueError(f"name at least one dimension: {', '.join(DIMENSIONS)}")
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension {unknown[0]!r}; choose from {', '.join(DIMENSIONS)}")
    return dims


def utc_day(session: Session) -> ColumnElement[Any]:
    """``created_at`` as its UTC calendar date, for this session's backend."""
    created = LedgerEntry.created_at
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        return func.date(created)
    if dialect == "postgresql":
        # A literal, not a bound parameter: GROUP BY must repeat the SELECT's expression exactly.
        return cast(func.timezone(literal_column("'UTC'"), created), Date)
    return cast(created, Date)  # a backend storing naive UTC, like SQLite does


def _as_date(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def _start_of(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _sums() -> list[ColumnElement[Any]]:
    ledger = LedgerEntry
    return [
        func.count(distinct(ledger.request_id)),
        func.count() - func.count(ledger.cache_hit),  # attempts: rows that are not hits
        func.coalesce(func.sum(ledger.input_tokens), 0),
        func.coalesce(func.sum(ledger.cached_input_tokens), 0),
        func.coalesce(func.sum(ledger.output_tokens), 0),
        func.coalesce(func.sum(ledger.cost_micros), 0),
        func.coalesce(func.sum(ledger.cache_savings_micros), 0),
        func.count(ledger.cache_hit),
        func.coalesce(func.sum(ledger.cost_avoided_micros), 0),
    ]


def _filtered(
    query: Select,
    *,
    team: str | None,
    since: date | None,
    until: date | None,
    job_ids: Sequence[str] | None,
) -> Select:
    # Compare created_at with UTC midnights, not its date: the (team_id, created_at) index
    # serves the range and both backends compare timestamps the same way.
    ledger = LedgerEntry
    if team is not None:
        query = query.where(ledger.team_id == team)
    if since is not None:
        query = query.where(ledger.created_at >= _start_of(since))
    if until is not None and until < date.max:  # the last day a date holds bounds nothing
        query = query.where(ledger.created_at < _start_of(until + timedelta(days=1)))
    if job_ids is not None:
        query = query.where(ledger.job_id.in_(job_ids))
    return query


def spend(
    session: Session,
    *,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    team: str | None = None,
    since: date | None = None,
    until: date | None = None,
    job_ids: Sequence[str] | None = None,
) -> SpendReport:
    """Spend grouped by ``group_by`` (a subset of :data:`DIMENSIONS`), with a totals row.

    ``since`` and ``until`` are UTC days, both inclusive; ``team`` and ``job_ids`` narrow the
    ledger before grouping. The totals are summed by the database over the same rows, not from
    the groups, so they also count distinct requests right.
    """
    try:
        dims = parse_group_by(group_by)
    except ValueError as exc:
        raise InvalidRequest(str(exc), field="group_by") from exc
    if since is not None and until is not None and since > until:
        raise InvalidRequest(f"until {until} is before since {since}", field="until")
    ledger = LedgerEntry
    columns: dict[str, ColumnElement[Any]] = {
        "team": ledger.team_id,
        "feature": ledger.feature,
        "model": ledger.model,
        "provider": ledger.provider,
        "day": utc_day(session),
    }
    keys = [columns[d].label(f"g_{d}") for d in dims]
    narrow = {"team": team, "since": since, "until": until, "job_ids": job_ids}
    grouped = _filtered(select(*keys, *_sums()), **narrow).group_by(*keys).order_by(*keys)
    rows = []
    for row in session.execute(grouped):
        key = dict(zip(dims, row[: len(dims)], strict=True))
        if "day" in key:
            key["day"] = _as_date(key["day"])
        rows.append(SpendRow(*(int(v) for v in row[len(dims) :]), **key))
    total = session.execute(_filtered(select(*_sums()), **narrow)).one()
    totals = SpendRow(*(int(v) for v in total))
    return SpendReport(dims, team, since, until, rows, totals)


def daily_cost_avoided(
    session: Session, *, days: int, team: str | None = None, today: date | None = None
) -> dict[date, int]:
    """Micro-dollars the response cache avoided per UTC day over the ``days`` days ending
    ``today``, every day present (0 where nothing was avoided), oldest first."""
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    avoided = {first + timedelta(days=i): 0 for i in range(days)}
    for row in spend(session, group_by=("day",), team=team, since=first, until=last).rows:
        assert row.day is not None
        avoided[row.day] = row.cost_avoided_micros
    return avoided


def daily_spend_by_team(
    session: Session, *, days: int, team: str | None = None, today: date | None = None
) -> dict[str, dict[date, int]]:
    """Micro-dollars per team per UTC day over the ``days`` days ending ``today`` (inclusive).

    Every team with any spend in the window gets every day, zero where it spent nothing, so a
    chart's bars line up; teams are sorted by id and days run oldest first.
    """
    if days < 1:
        raise InvalidRequest("days must be at least 1", field="days")
    last = today or datetime.now(UTC).date()
    first = last - timedelta(days=days - 1)
    window = [first + timedelta(days=i) for i in range(days)]
    report = spend(session, group_by=("team", "day"), team=team, since=first, until=last)
    series: dict[str, dict[date, int]] = {}
    for row in report.rows:
        assert row.team is not None and row.day is not None
        series.setdefault(row.team, dict.fromkeys(window, 0))[row.day] = row.cost_micros
    return series
