"""The spend-velocity breaker: a team spending too fast is paused until an operator resumes it.

A runaway loop spends a day's budget in minutes. For each team with ``velocity_share`` set and a
daily team budget, the leader sums the team's ledger over the last ``velocity_window_s``; past
``velocity_share`` of the daily limit, the team's queues pause (only that team's) and an alert
fires. Resuming is an operator's decision (``inference-broker teams resume``), never automatic;
after a resume only spend from then on counts, or the same spend would trip it again at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import func, select

from broker.config.broker_toml import BrokerConfig
from broker.money import format_usd
from broker.store import Database, LedgerEntry, team_settings
from broker.store.models import utcnow
from schedulers.alerts import Alerts
from schedulers.budgets import BudgetLimits
from schedulers.pauses import Pauses

log = logging.getLogger(__name__)


class VelocityBreaker:
    def __init__(
        self,
        db: Database,
        config: BrokerConfig,
        limits: BudgetLimits,
        pauses: Pauses,
        alerts: Alerts,
    ) -> None:
        self._db = db
        self._limits = limits
        self._pauses = pauses
        self._alerts = alerts
        self._was_paused: set[str] = set()
        self._resumed_at: dict[str, datetime] = {}
        self._watched = []
        for team in config.teams:
            daily = next(
                (
                    b
                    for b in config.budgets
                    if b.team == team.id and b.feature is None and b.window == "daily"
                ),
                None,
            )
            if team.velocity_share is not None and daily is not None:
                self._watched.append((team, daily.id))

    def check(self) -> list[str]:
        """Pause every watched team over its velocity; returns the teams paused now."""
        tripped = []
        paused = set(self._pauses())
        for team in self._was_paused - paused:
            self._resumed_at[team] = utcnow()
        self._was_paused = paused
        for team, budget_id in self._watched:
            if team.id in paused:
                continue
            since = utcnow() - timedelta(seconds=team.velocity_window_s)
            if team.id in self._resumed_at:
                since = max(since, self._resumed_at[team.id])
            with self._db.session() as session:
                spent = int(
                    session.scalar(
                        select(func.coalesce(func.sum(LedgerEntry.cost_micros), 0)).where(
                            LedgerEntry.team_id == team.id, LedgerEntry.created_at >= since
                        )
                    )
                    or 0
                )
            limit = self._limits().get(budget_id, 0)
            threshold = team.velocity_share * limit
            if limit <= 0 or spent <= threshold:
                continue
            reason = (
                f"spend-velocity breaker: {format_usd(spent)} in the last "
                f"{team.velocity_window_s:.0f} s, over {team.velocity_share:.0%} of the daily "
                f"budget {budget_id} ({format_usd(limit)})"
            )
            if self._db.write(lambda s, t=team.id, why=reason: team_settings.set_paused(s, t, why)):
                self._pauses.add(team.id)
                self._was_paused.add(team.id)
                self._alerts.fire(
                    team.id,
                    "velocity_breaker",
                    f"team {team.id} paused: {reason}",
                    spent_micros=spent,
                    limit_micros=limit,
                )
                tripped.append(team.id)
        return tripped
