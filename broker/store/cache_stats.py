"""Response cache figures per team and feature, from the ledger (one row per charged attempt
and per hit, :mod:`broker.store.cache_hits`)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from broker.store.models import LedgerEntry


@dataclass(frozen=True, slots=True)
class CacheStats:
    team: str
    feature: str
    requests: int
    exact_hits: int
    semantic_hits: int
    single_flight_hits: int
    cost_micros: int
    cost_avoided_micros: int

    @property
    def hits(self) -> int:
        return self.exact_hits + self.semantic_hits + self.single_flight_hits

    @property
    def hit_rate(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


def _kind(kind: str):
    return func.coalesce(func.sum(case((LedgerEntry.cache_hit == kind, 1), else_=0)), 0)


def cache_stats(session: Session, team: str | None = None) -> list[CacheStats]:
    """Every team's features (or one team's) with anything in the ledger, sorted."""
    ledger = LedgerEntry
    query = (
        select(
            ledger.team_id,
            ledger.feature,
            func.count(distinct(ledger.request_id)),
            _kind("exact"),
            _kind("semantic"),
            _kind("single_flight"),
            func.coalesce(func.sum(ledger.cost_micros), 0),
            func.coalesce(func.sum(ledger.cost_avoided_micros), 0),
        )
        .group_by(ledger.team_id, ledger.feature)
        .order_by(ledger.team_id, ledger.feature)
    )
    if team is not None:
        query = query.where(ledger.team_id == team)
    return [
        CacheStats(row[0], row[1], *(int(v) for v in row[2:])) for row in session.execute(query)
    ]
