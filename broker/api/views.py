"""Database rows → public response models."""

from __future__ import annotations

from broker.money import format_usd
from broker.schemas.http import (
    CacheInfo,
    CallOut,
    JobCounts,
    JobOut,
    ResultError,
    ResultOut,
    RouteDecisionOut,
    Usage,
)
from broker.store.models import Job, ProviderCall, Request


def job_out(job: Job) -> JobOut:
    return JobOut(
        id=job.id,
        team=job.team_id,
        feature=job.feature,
        priority=job.priority,
        status=job.status,
        counts=JobCounts(
            total=job.n_total,
            pending=job.n_total - job.n_done,
            succeeded=job.n_succeeded,
            failed=job.n_failed,
            cancelled=job.n_cancelled,
            expired=job.n_expired,
        ),
        usage=Usage(input_tokens=job.input_tokens, output_tokens=job.output_tokens),
        cost_micros=job.cost_micros,
        cost_usd=format_usd(job.cost_micros, places=6),
        cache_hits=job.n_cache_hits or 0,
        cost_avoided_micros=job.cost_avoided_micros or 0,
        webhook_url=job.webhook_url,
        metadata=job.metadata_,
        created_at=job.created_at,
        started_at=job.started_at,
        expires_at=job.expires_at,
        finished_at=job.finished_at,
    )


def result_out(request: Request, calls: list[ProviderCall] | None = None) -> ResultOut:
    usage = None
    if request.input_tokens is not None:
        usage = Usage(
            input_tokens=request.input_tokens,
            cached_input_tokens=request.cached_input_tokens or 0,
            output_tokens=request.output_tokens or 0,
        )
    error = None
    if request.error_code:
        error = ResultError(code=request.error_code, message=request.error or request.error_code)
    return ResultOut(
        id=request.id,
        custom_id=request.custom_id,
        status=request.status,
        model=request.model,
        route=RouteDecisionOut(**request.route_decision) if request.route_decision else None,
        model_used=request.model_used,
        provider=request.provider_used,
        output=request.output,
        finish_reason=request.finish_reason,
        usage=usage,
        cost_micros=request.cost_micros,
        latency_ms=request.latency_ms,
        attempts=request.attempts,
        error=error,
        metadata=request.metadata_,
        cache=CacheInfo(
            hit=request.cache_hit,
            source_request_id=request.cache_source_id or "",
            cost_avoided_micros=request.cost_avoided_micros or 0,
        )
        if request.cache_hit
        else None,
        calls=[
            CallOut(
                attempt=c.attempt,
                try_=c.try_,
                model=c.model,
                provider=c.provider,
                outcome=c.outcome,
                error=c.error,
                latency_ms=c.latency_ms,
                cost_micros=c.cost_micros,
            )
            for c in calls or ()
        ],
    )
