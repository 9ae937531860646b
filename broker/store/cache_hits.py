"""Requests answered from the response cache: the rows a hit writes, in one transaction with
the job's counters (:mod:`broker.store.job_counts`).

A hit is free: its request succeeds with the reused answer, ``cost_micros`` 0 and no ledger
row (nothing was reserved, nothing is charged), its token counts 0 (they are not billed
usage), ``cache_hit`` saying how it was found (``exact``, ``semantic`` or ``single_flight``),
``cache_source_id`` the request whose answer it reused, and ``cost_avoided_micros`` what that
answer had cost. The job counts it as succeeded, and adds it to its hits and cost avoided.
The ledger gets a row for it (attempt 0, tokens and cost 0, the cost avoided beside), so every
report, grouped by team, feature, model or day, counts hits and savings from the one table it
reads spend from; budgets, summed from the ledger's cost, are untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, insert, update
from sqlalchemy.orm import Session

from broker.cache.exact import CachedAnswer
from broker.states import RequestStatus
from broker.store.job_counts import count_ended
from broker.store.models import LedgerEntry, Request, utcnow
from broker.store.outbox import RequestEnd

_R, _L = Request.__table__, LedgerEntry.__table__

HIT_KINDS = ("exact", "semantic", "single_flight")


@dataclass(frozen=True, slots=True)
class Hit:
    request_id: str
    job_id: str
    kind: str  # one of HIT_KINDS
    answer: CachedAnswer
    team_id: str
    feature: str
    trace_id: str | None = None


def _ledger_row(hit: Hit, now: datetime) -> dict[str, Any]:
    return {
        "request_id": hit.request_id,
        "attempt": 0,
        "job_id": hit.job_id,
        "team_id": hit.team_id,
        "feature": hit.feature,
        "model": hit.answer.model,
        "provider": hit.answer.provider,
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "cost_micros": 0,
        "cache_savings_micros": 0,
        "cache_hit": hit.kind,
        "cost_avoided_micros": hit.answer.cost_micros,
        "trace_id": hit.trace_id,
        "created_at": now,
    }


HIT_COLUMNS = (
    "status",
    "model_used",
    "provider_used",
    "output",
    "finish_reason",
    "stop_sequence",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_micros",
    "latency_ms",
    "cache_hit",
    "cache_source_id",
    "cost_avoided_micros",
    "finished_at",
)


def hit_fields(kind: str, answer: CachedAnswer, now: datetime) -> dict[str, Any]:
    """The columns of a request answered by ``answer`` (for an insert or an update)."""
    return {
        "status": RequestStatus.SUCCEEDED.value,
        "model_used": answer.model,
        "provider_used": answer.provider,
        "output": answer.output,
        "finish_reason": answer.finish_reason,
        "stop_sequence": answer.stop_sequence,
        "input_tokens": 0,
        "cached_input_tokens": 0,
        "output_tokens": 0,
        "cost_micros": 0,
        "latency_ms": 0,
        "cache_hit": kind,
        "cache_source_id": answer.source_request_id,
        "cost_avoided_micros": answer.cost_micros,
        "finished_at": now,
    }


def count_hits(session: Session, job_id: str, hits: Sequence[Hit]) -> None:
    """The ledger rows of hits already written as requests (submission writes them as rows),
    and their job's counters."""
    now = utcnow()
    session.execute(insert(_L), [_ledger_row(hit, now) for hit in hits])
    count_ended(
        session,
        job_id,
        succeeded=len(hits),
        cache_hits=len(hits),
        cost_avoided_micros=sum(h.answer.cost_micros for h in hits),
        ended=[RequestEnd(h.request_id, RequestStatus.SUCCEEDED, 0, None) for h in hits],
    )


_COMPLETE = (
    update(_R)
    .where(_R.c.id == bindparam("b_id"), _R.c.status == RequestStatus.QUEUED)
    .values({name: bindparam(f"b_{name}") for name in HIT_COLUMNS})
)


def complete_queued(session: Session, hits: Sequence[Hit]) -> list[Hit]:
    """queued → succeeded from the cache, for those still queued (a cancelled or expired one
    stays as it is); returns the hits recorded."""
    if not hits:
        return []
    now = utcnow()
    recorded = []
    for hit in hits:  # one conditional UPDATE each: the rowcount says who won
        params = {f"b_{k}": v for k, v in hit_fields(hit.kind, hit.answer, now).items()}
        if session.execute(_COMPLETE, {"b_id": hit.request_id, **params}).rowcount:
            recorded.append(hit)
    by_job: dict[str, list[Hit]] = {}
    for hit in recorded:
        by_job.setdefault(hit.job_id, []).append(hit)
    for job_id in sorted(by_job):  # a fixed order: concurrent writers cannot deadlock
        count_hits(session, job_id, by_job[job_id])
    return recorded
