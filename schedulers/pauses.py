"""Paused teams: their queues are not served until an operator resumes them.

A pause is a row in ``team_settings`` (the record: it survives a Redis restart), set by the
spend-velocity breaker (:mod:`schedulers.velocity`) or by an operator, and cleared only by an
operator (admin API or ``inference-broker teams resume``); writes are
:func:`broker.store.team_settings.set_paused`. The scheduler rereads pauses every
``refresh_s`` seconds; the breaker also tells its own scheduler at once.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from broker.store import Database, TeamSetting
from schedulers.reread import Reread

log = logging.getLogger(__name__)


class Pauses(Reread[set[str]]):
    """Callable: the set of paused team ids, reread from the database every ``refresh_s``."""

    what = "paused teams"

    def __init__(self, db: Database, refresh_s: float = 2.0) -> None:
        self._db = db
        super().__init__(set(), refresh_s)

    def load(self) -> set[str]:
        return set(read_paused(self._db))

    def add(self, team: str) -> None:
        """This process paused ``team`` itself: no need to wait for the next read."""
        self._value.add(team)


def read_paused(db: Database) -> dict[str, str]:
    """team → why it is paused."""
    with db.session() as session:
        rows = session.execute(
            select(TeamSetting.team_id, TeamSetting.paused_reason).where(
                TeamSetting.paused_reason.is_not(None)
            )
        ).all()
    return {row.team_id: row.paused_reason for row in rows}
