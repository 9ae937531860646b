"""Each team's fair-share weight: ``broker.toml``, overridden at run time by an operator.

Overrides are rows in the result store (``team_settings``), the record, so they survive a Redis
restart; the scheduler rereads them every ``refresh_s`` seconds, so a change made through the
admin API or CLI takes effect within that time without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from broker.config import BrokerConfig
from broker.store import Database, TeamSetting

log = logging.getLogger(__name__)


class TeamWeights:
    """Callable: the current weights, team id → weight."""

    def __init__(self, db: Database, config: BrokerConfig, refresh_s: float = 2.0) -> None:
        self._db = db
        self._base = {t.id: t.weight for t in config.teams}
        self._refresh_s = refresh_s
        self._weights: dict[str, float] = dict(self._base)
        self._read_at = float("-inf")

    def __call__(self) -> Mapping[str, float]:
        now = time.monotonic()
        if now - self._read_at >= self._refresh_s:
            self._read_at = now
            try:
                self._weights = {**self._base, **read_overrides(self._db)}
            except SQLAlchemyError as exc:  # keep the last known weights
                log.warning("could not read team weights, keeping the last ones: %s", exc)
        return self._weights


def read_overrides(db: Database) -> dict[str, float]:
    with db.session() as session:
        rows = session.execute(
            select(TeamSetting.team_id, TeamSetting.weight).where(TeamSetting.weight.is_not(None))
        ).all()
    return {row.team_id: row.weight for row in rows}
