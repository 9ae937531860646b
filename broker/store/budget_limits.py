"""Writes to ``budget_limits``: an operator's run-time override of a budget's limit.

The same portable upsert as :mod:`broker.store.team_settings` (select, then insert or update).
Run these through :meth:`Database.write`: when two operators create the same budget's row at
once, the loser's insert hits the primary key, becomes a :class:`WriteConflict` and is retried,
and the retry updates the row the winner made. The scheduler rereads the overrides every few
seconds (:class:`schedulers.budgets.BudgetLimits`).
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.store.db import WriteConflict
from broker.store.models import BudgetLimit, utcnow


def set_limit(session: Session, budget_id: str, limit_micros: int | None) -> None:
    """Override ``budget_id``'s limit; ``None`` removes the override (back to broker.toml)."""
    row = session.get(BudgetLimit, budget_id)
    if limit_micros is None:
        if row is not None:
            session.delete(row)
        return
    if row is not None:
        row.limit_micros = limit_micros
        row.updated_at = utcnow()
        return
    session.add(BudgetLimit(budget_id=budget_id, limit_micros=limit_micros, updated_at=utcnow()))
    try:
        session.flush()
    except IntegrityError as exc:
        raise WriteConflict(f"budget_limits row for {budget_id!r} created meanwhile") from exc


def read_limits(session: Session) -> dict[str, int]:
    """budget id → overridden limit in micro-dollars."""
    rows = session.execute(select(BudgetLimit.budget_id, BudgetLimit.limit_micros))
    return {row.budget_id: row.limit_micros for row in rows}
