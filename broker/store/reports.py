"""Spend read from the cost ledger, the record of every charged attempt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from broker.store.models import LedgerEntry


@dataclass(frozen=True, slots=True)
class SpendRow:
    team: str
    feature: str
    model: str
    requests: int
    input_tokens: int
    cached_input_tokens: int
    output_tokens: int
    cost_micros: int


def spend_by_team_feature_model(
    session: Session, job_ids: Sequence[str] | None = None
) -> list[SpendRow]:
    ledger = LedgerEntry
    query = (
        select(
            ledger.team_id,
            ledger.feature,
            ledger.model,
            func.count(),
            func.sum(ledger.input_tokens),
            func.sum(ledger.cached_input_tokens),
            func.sum(ledger.output_tokens),
            func.sum(ledger.cost_micros),
        )
        .group_by(ledger.team_id, ledger.feature, ledger.model)
        .order_by(ledger.team_id, ledger.feature, ledger.model)
    )
    if job_ids is not None:
        query = query.where(ledger.job_id.in_(job_ids))
    return [SpendRow(*(row[:3]), *(int(v or 0) for v in row[3:])) for row in session.execute(query)]
