"""Each team's fair-share weight: ``broker.toml``, overridden at run time by an operator.

Overrides are rows in the result store (``team_settings``), the record, so they survive a Redis
restart; the scheduler rereads them every ``refresh_s`` seconds, so a change made through the
admin API or CLI takes effect within that time without a restart.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from broker.config.broker_toml import BrokerConfig
from broker.store import Database, TeamSetting
from schedulers.reread import Reread

log = logging.getLogger(__name__)


class TeamWeights(Reread[dict[str, float]]):
    """Callable: the current weights, team id → weight."""

    what = "team weights"

    def __init__(self, db: Database, config: BrokerConfig, refresh_s: float = 2.0) -> None:
        self._db = db
        self._base = {t.id: t.weight for t in config.teams}
        super().__init__(dict(self._base), refresh_s)

    def load(self) -> dict[str, float]:
        return {**self._base, **read_overrides(self._db)}


def read_overrides(db: Database) -> dict[str, float]:
    with db.session() as session:
        rows = session.execute(
            select(TeamSetting.team_id, TeamSetting.weight).where(TeamSetting.weight.is_not(None))
        ).all()
    return {row.team_id: row.weight for row in rows}
