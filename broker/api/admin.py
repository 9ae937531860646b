"""``/v1/admin``: operators see each team's fairness state and change its weight at run time.

A weight set here is a row in ``team_settings``; the scheduler rereads those every few seconds
(:class:`schedulers.weights.TeamWeights`), so no restart is needed, and ``DELETE`` hands the
team back to its ``broker.toml`` weight.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from fastapi import APIRouter, Depends, Request
from sqlalchemy.exc import SQLAlchemyError

from broker.api.auth import authenticate_admin
from broker.errors import NotFound, ServiceUnavailable
from broker.schemas import Backlog, ErrorBody, TeamList, TeamStatusOut, WeightIn
from broker.store import team_settings
from schedulers.status import TeamStatus, team_status
from schedulers.weights import read_overrides

router = APIRouter(
    prefix="/v1/admin",
    tags=["admin"],
    dependencies=[Depends(authenticate_admin)],
    responses={
        401: {"model": ErrorBody},
        403: {"model": ErrorBody},
        503: {"model": ErrorBody},
    },
)


@contextmanager
def _stores() -> Iterator[None]:
    """Redis and database failures leave as 503, like everywhere else in the API."""
    try:
        yield
    except redis.RedisError as exc:
        raise ServiceUnavailable(f"Redis is unreachable: {exc}") from exc
    except SQLAlchemyError as exc:
        raise ServiceUnavailable(f"the database is unreachable: {type(exc).__name__}") from exc


def _statuses(request: Request) -> list[TeamStatus]:
    resources = request.app.state.broker
    with _stores():
        overrides = read_overrides(resources.db)
        return team_status(resources.redis, resources.config, overrides)


def _out(status: TeamStatus) -> TeamStatusOut:
    return TeamStatusOut(
        team=status.team,
        weight=status.weight,
        weight_source=status.weight_source,
        counter=status.counter,
        backlog=Backlog(**status.backlog),
        queued=status.queued,
        service=status.service,
        share=status.share,
    )


def _known_team(request: Request, team_id: str) -> None:
    config = request.app.state.broker.config
    if not config.has_team(team_id):
        known = ", ".join(sorted(t.id for t in config.teams)) or "none"
        raise NotFound(f"no team {team_id!r} in broker.toml (known: {known})")


def _one(request: Request, team_id: str) -> TeamStatusOut:
    return next(_out(s) for s in _statuses(request) if s.team == team_id)


@router.get("/teams", response_model=TeamList)
def list_teams(request: Request) -> TeamList:
    """Every team: weight (and where it comes from), counter, backlog, share of service."""
    return TeamList(teams=[_out(s) for s in _statuses(request)])


@router.put(
    "/teams/{team_id}/weight",
    response_model=TeamStatusOut,
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def set_weight(team_id: str, body: WeightIn, request: Request) -> TeamStatusOut:
    """Override the team's fair-share weight; the scheduler uses it within a few seconds."""
    _known_team(request, team_id)
    with _stores():
        request.app.state.broker.db.write(
            lambda session: team_settings.set_weight(session, team_id, body.weight)
        )
    return _one(request, team_id)


@router.delete(
    "/teams/{team_id}/weight", response_model=TeamStatusOut, responses={404: {"model": ErrorBody}}
)
def reset_weight(team_id: str, request: Request) -> TeamStatusOut:
    """Remove the override: the team is back to its weight in broker.toml."""
    _known_team(request, team_id)
    with _stores():
        request.app.state.broker.db.write(
            lambda session: team_settings.set_weight(session, team_id, None)
        )
    return _one(request, team_id)
