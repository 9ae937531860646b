"""``GET /v1/jobs/{id}/webhooks``: a job's webhook deliveries and every attempt at each."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from broker.api.auth import authenticate
from broker.api.errors import store_errors
from broker.api.params import JobId
from broker.api.resources import resources_of
from broker.config.broker_toml import TeamConfig
from broker.schemas.http import (
    ErrorBody,
    WebhookAttemptOut,
    WebhookDeliveryList,
    WebhookDeliveryOut,
)
from broker.store import deliveries, queries

router = APIRouter(
    prefix="/v1/jobs",
    tags=["jobs"],
    responses={401: {"model": ErrorBody}, 404: {"model": ErrorBody}, 503: {"model": ErrorBody}},
)
Team = Annotated[TeamConfig, Depends(authenticate)]


@router.get("/{job_id}/webhooks", response_model=WebhookDeliveryList)
def list_webhooks(job_id: JobId, team: Team, request: Request) -> WebhookDeliveryList:
    """The job's deliveries, oldest first, each with its attempts (status code or error)."""
    with store_errors(), resources_of(request).db.session() as session:
        queries.get_job(session, team.id, job_id)  # another team's job: 404
        return WebhookDeliveryList(
            data=[
                WebhookDeliveryOut(
                    id=d.id,
                    type=d.event_type,
                    url=d.url,
                    status=d.status,
                    attempts=[
                        WebhookAttemptOut(
                            attempt=a.attempt,
                            at=a.at,
                            status_code=a.status_code,
                            error=a.error,
                            duration_ms=a.duration_ms,
                        )
                        for a in attempts
                    ],
                    next_attempt_at=d.next_attempt_at,
                    last_status_code=d.last_status_code,
                    last_error=d.last_error,
                    created_at=d.created_at,
                    delivered_at=d.delivered_at,
                )
                for d, attempts in deliveries.of_job(session, job_id)
            ]
        )
