"""Writes to ``team_settings``: an operator's run-time override of a team's fair-share weight.

Portable upsert (select, then insert or update) rather than ``ON CONFLICT``, which SQLite and
PostgreSQL spell differently. Run these through :meth:`Database.write`: when two operators
create the same team's row at once, the loser's insert hits the primary key, is turned into a
:class:`WriteConflict` and retried, and the retry updates the row the winner made.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.store.db import WriteConflict
from broker.store.models import TeamSetting, utcnow


def set_weight(session: Session, team_id: str, weight: float | None) -> None:
    """Override ``team_id``'s weight; ``None`` removes the override (back to broker.toml).

    A reset keeps the row (weight NULL) so ``updated_at`` still says when it last changed.
    """
    row = session.get(TeamSetting, team_id)
    if row is None and weight is None:
        return
    row = row or _new_row(session, team_id)
    row.weight = weight
    row.updated_at = utcnow()


def set_paused(session: Session, team_id: str, reason: str | None) -> bool:
    """Pause the team's queues with ``reason``, or resume them (``None``).

    Returns False when nothing changed (already paused, or not paused).
    """
    row = session.get(TeamSetting, team_id)
    if (row is None or row.paused_reason is None) == (reason is None):
        return False
    row = row or _new_row(session, team_id)
    row.paused_reason = reason
    row.paused_at = utcnow() if reason is not None else None
    row.updated_at = utcnow()
    return True


def _new_row(session: Session, team_id: str) -> TeamSetting:
    row = TeamSetting(team_id=team_id, updated_at=utcnow())
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise WriteConflict(f"team_settings row for {team_id!r} created meanwhile") from exc
    return row
