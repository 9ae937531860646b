"""A cascade's escalation in the database: the cheaper tier's attempt charged, the request
queued again on the next tier (:mod:`workers.cascade` decides; :mod:`broker.store.transitions`
holds the other state changes)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, update
from sqlalchemy.orm import Session

from broker.states import RequestStatus
from broker.store.job_counts import count_ended
from broker.store.models import LedgerEntry, ProviderCall, Request, utcnow
from broker.store.transitions import Claimed, Outcome, call_rows, ledger_row

_R, _L, _C = Request.__table__, LedgerEntry.__table__, ProviderCall.__table__


@dataclass(frozen=True, slots=True)
class Escalation:
    """A cheaper tier answered and a cascade check turned the answer down: the attempt is
    charged, and the request goes back to its queue for ``next_model`` (the next tier)."""

    next_model: str
    route_decision: dict[str, Any]


def escalate(session: Session, claimed: Claimed, outcome: Outcome, escalation: Escalation) -> bool:
    """running → queued on the next tier, this attempt charged (ledger, calls, the job's
    cost and tokens, the request's cost so far); False when the attempt is stale."""
    now = utcnow()
    moved = session.execute(
        update(_R)
        .where(
            _R.c.id == claimed.request_id,
            _R.c.attempts == claimed.attempt,
            _R.c.status == RequestStatus.RUNNING,
        )
        .values(
            status=RequestStatus.QUEUED,
            model=escalation.next_model,
            chain_index=0,
            route_decision=escalation.route_decision,
            cost_micros=func.coalesce(_R.c.cost_micros, 0) + outcome.cost_micros,
            started_at=None,
        )
    ).rowcount
    if not moved:
        return False
    session.execute(insert(_L), [ledger_row(claimed, outcome, now)])
    if outcome.calls:
        session.execute(insert(_C), call_rows(claimed, outcome.calls, now))
    count_ended(
        session,
        claimed.job_id,
        input_tokens=outcome.input_tokens + outcome.cached_input_tokens,
        output_tokens=outcome.output_tokens,
        cost_micros=outcome.cost_micros,
    )
    return True
