"""``/v1/admin/breakers``: the circuit breakers of every provider and model, and their recent
transitions (open, half-open, closed, with the reason), for operators."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Query, Request

from broker.api.auth import admin_router
from broker.api.errors import store_errors
from broker.api.resources import resources_of
from broker.schemas.http import BreakerList, BreakerOut, BreakerTransitionOut
from workers.breakers import Breakers

router = admin_router()


@router.get("/breakers", response_model=BreakerList)
def list_breakers(
    request: Request, limit: Annotated[int, Query(ge=0, le=1000)] = 100
) -> BreakerList:
    """Each provider's and model's breaker now, and up to ``limit`` recent transitions."""
    resources = resources_of(request)
    breakers = Breakers(resources.redis, resources.config)
    with store_errors():
        states = breakers.states()
        transitions = breakers.transitions(limit)
    return BreakerList(
        breakers=[
            BreakerOut(
                **{
                    **s.as_dict(),
                    "opened_at": _when(s.opened_at),
                    "retry_at": _when(s.retry_at),
                }
            )
            for s in states
        ],
        transitions=[
            BreakerTransitionOut.model_validate({**t, "at": _when(t["at"])}) for t in transitions
        ],
    )


def _when(epoch_s: float | None) -> datetime | None:
    return None if epoch_s is None else datetime.fromtimestamp(epoch_s, UTC)
