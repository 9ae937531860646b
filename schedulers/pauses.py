"""Paused teams: their queues are not served until an operator resumes them.

A pause is a row in ``team_settings`` (the record: it survives a Redis restart), set by the
spend-velocity breaker (:mod:`schedulers.velocity`) or by an operator, and cleared only by an
operator (admin API or ``inference-broker teams resume``); writes are
:func:`broker.store.team_settings.set_paused`. The scheduler rereads pauses every
``refresh_s`` seconds; the breaker also tells its own scheduler at once.
"""

from __future__ import annotations

import logging
import time

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from broker.store import Database, TeamSetting

log = logging.getLogger(__name__)


class Pauses:
    """Callable: the set of paused team ids, reread from the database every ``refresh_s``."""

    def __init__(self, db: Database, refresh_s: float = 2.0) -> None:
        self._db = db
        self._refresh_s = refresh_s
        self._paused: set[str] = set()
        self._read_at = float("-inf")

    def __call__(self) -> set[str]:
        now = time.monotonic()
        if now - self._read_at >= self._refresh_s:
            self._read_at = now
            try:
                self._paused = set(read_paused(self._db))
            except SQLAlchemyError as exc:
                log.warning("could not read paused teams, keeping the last ones: %s", exc)
        return self._paused

    def add(self, team: str) -> None:
        """This process paused ``team`` itself: no need to wait for the next read."""
        self._paused.add(team)


def read_paused(db: Database) -> dict[str, str]:
    """team → why it is paused."""
    with db.session() as session:
        rows = session.execute(
            select(TeamSetting.team_id, TeamSetting.paused_reason).where(
                TeamSetting.paused_reason.is_not(None)
            )
        ).all()
    return {row.team_id: row.paused_reason for row in rows}
