"""``/v1/admin``: operators see and steer teams, budgets and alerts at run time.

- ``/teams``: each team's fairness state and pause; ``PUT``/``DELETE .../weight`` override its
  fair-share weight, ``POST .../pause`` and ``.../resume`` stop and restart its queues.
- ``/budgets``: every ``[[budgets]]`` entry in its current window (limit, spent, reserved,
  remaining); ``PUT``/``DELETE /budgets/{id}/limit`` override its limit.
- ``/alerts``: the recent alerts (budget thresholds, pauses, resumes), newest first.

Every change is a database row (``team_settings``, ``budget_limits``) that the scheduler
rereads every few seconds, so no restart is needed; ``DELETE`` hands a team or budget back to
its ``broker.toml`` value.
"""

from __future__ import annotations

import logging
from typing import Annotated

import redis
from fastapi import Body, Query, Request

from broker.api.auth import admin_router
from broker.api.errors import store_errors
from broker.api.resources import ApiResources, resources_of
from broker.config.budgets import BudgetConfig
from broker.errors import NotFound
from broker.money import format_usd, usd_to_micros
from broker.schemas.http import (
    AlertList,
    AlertOut,
    Backlog,
    BudgetLimitIn,
    BudgetList,
    BudgetOut,
    ErrorBody,
    PauseIn,
    TeamList,
    TeamPauseOut,
    TeamStatusOut,
    WeightIn,
)
from broker.store import budget_limits, team_settings
from schedulers.alerts import Alerts, recent_alerts
from schedulers.budgets import BudgetLimits, Budgets
from schedulers.pauses import read_paused
from schedulers.status import TeamStatus, team_status
from schedulers.weights import read_overrides

log = logging.getLogger(__name__)

router = admin_router()


def _statuses(request: Request) -> list[TeamStatusOut]:
    resources = resources_of(request)
    with store_errors():
        overrides = read_overrides(resources.db)
        paused = read_paused(resources.db)
        statuses = team_status(resources.redis, resources.config, overrides)
    return [_out(s, paused.get(s.team)) for s in statuses]


def _out(status: TeamStatus, paused_reason: str | None) -> TeamStatusOut:
    return TeamStatusOut(
        team=status.team,
        weight=status.weight,
        weight_source=status.weight_source,
        counter=status.counter,
        backlog=Backlog(**status.backlog),
        parked=status.parked,
        queued=status.queued,
        service=status.service,
        share=status.share,
        paused=paused_reason is not None,
        paused_reason=paused_reason,
    )


def known_team(request: Request, team_id: str) -> None:
    config = resources_of(request).config
    if not config.has_team(team_id):
        known = ", ".join(sorted(t.id for t in config.teams)) or "none"
        raise NotFound(f"no team {team_id!r} in broker.toml (known: {known})")


def _one(request: Request, team_id: str) -> TeamStatusOut:
    return next(s for s in _statuses(request) if s.team == team_id)


@router.get("/teams", response_model=TeamList)
def list_teams(request: Request) -> TeamList:
    """Every team: weight (and where it comes from), counter, backlog, share, pause."""
    return TeamList(teams=_statuses(request))


@router.put(
    "/teams/{team_id}/weight",
    response_model=TeamStatusOut,
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def set_weight(team_id: str, body: WeightIn, request: Request) -> TeamStatusOut:
    """Override the team's fair-share weight; the scheduler uses it within a few seconds."""
    known_team(request, team_id)
    with store_errors():
        resources_of(request).db.write(
            lambda session: team_settings.set_weight(session, team_id, body.weight)
        )
    return _one(request, team_id)


@router.delete(
    "/teams/{team_id}/weight", response_model=TeamStatusOut, responses={404: {"model": ErrorBody}}
)
def reset_weight(team_id: str, request: Request) -> TeamStatusOut:
    """Remove the override: the team is back to its weight in broker.toml."""
    known_team(request, team_id)
    with store_errors():
        resources_of(request).db.write(
            lambda session: team_settings.set_weight(session, team_id, None)
        )
    return _one(request, team_id)


@router.post(
    "/teams/{team_id}/pause",
    response_model=TeamPauseOut,
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def pause_team(
    team_id: str, request: Request, body: Annotated[PauseIn | None, Body()] = None
) -> TeamPauseOut:
    """Stop serving the team's queues (submissions still queue) until it is resumed.

    Pausing a team that is already paused keeps the first reason.
    """
    known_team(request, team_id)
    reason = (body or PauseIn()).reason
    return _set_paused(request, team_id, reason, "paused", f"team {team_id} paused: {reason}")


@router.post(
    "/teams/{team_id}/resume", response_model=TeamPauseOut, responses={404: {"model": ErrorBody}}
)
def resume_team(team_id: str, request: Request) -> TeamPauseOut:
    """Serve the team's queues again, whoever paused them (an operator or the velocity breaker)."""
    known_team(request, team_id)
    return _set_paused(request, team_id, None, "resumed", f"team {team_id} resumed by an operator")


def _set_paused(
    request: Request, team_id: str, reason: str | None, kind: str, message: str
) -> TeamPauseOut:
    resources = resources_of(request)
    with store_errors():
        changed = resources.db.write(
            lambda session: team_settings.set_paused(session, team_id, reason)
        )
        now = read_paused(resources.db).get(team_id)
    if changed:  # the alert log and the team's webhook hear of it, once
        try:
            Alerts(resources.redis, resources.config).fire(team_id, kind, message)
        except redis.RedisError as exc:  # the row is the record: the change stands without it
            log.warning("could not record the %s alert for team %s: %s", kind, team_id, exc)
    return TeamPauseOut(team=team_id, paused=now is not None, reason=now, changed=changed)


def _known_budget(request: Request, budget_id: str) -> BudgetConfig:
    budgets = resources_of(request).config.budgets
    found = next((b for b in budgets if b.id == budget_id), None)
    if found is None:
        known = ", ".join(sorted(b.id for b in budgets)) or "none"
        raise NotFound(f"no budget {budget_id!r} in broker.toml (known: {known})")
    return found


def _budgets(request: Request, only: BudgetConfig | None = None) -> list[BudgetOut]:
    return budget_views(resources_of(request), only)


def budget_views(resources: ApiResources, only: BudgetConfig | None = None) -> list[BudgetOut]:
    """Budgets in their current window with their state in Redis (loaded from the ledger when
    Redis lacks it, exactly as the scheduler does). Shared with ``/metrics``; Redis and database
    failures raise ``ServiceUnavailable``."""
    config = resources.config
    chosen = [only] if only is not None else list(config.budgets)
    with store_errors():
        with resources.db.session() as session:
            overrides = budget_limits.read_limits(session)
        budgets = Budgets(
            resources.redis, resources.db, config, BudgetLimits(resources.db, config, refresh_s=0)
        )
        by_id = {scope.label: scope for scope in budgets.scopes_of_all_budgets()}
        scopes = [by_id[budget.id] for budget in chosen]
        state = budgets.snapshot(scopes)
    out = []
    for budget, scope in zip(chosen, scopes):
        spent, reserved = state[scope.key]
        remaining = max(0, scope.limit - spent - reserved)
        out.append(
            BudgetOut(
                id=budget.id,
                team=budget.team,
                feature=budget.feature,
                window=budget.window,
                window_start=scope.start,
                window_end=scope.end,
                limit_micros=scope.limit,
                limit_source="override" if budget.id in overrides else "config",
                spent_micros=spent,
                reserved_micros=reserved,
                remaining_micros=remaining,
                limit_usd=format_usd(scope.limit),
                spent_usd=format_usd(spent),
                reserved_usd=format_usd(reserved),
                remaining_usd=format_usd(remaining),
            )
        )
    return out


@router.get("/budgets", response_model=BudgetList)
def list_budgets(request: Request) -> BudgetList:
    """Every budget in its current UTC window: limit (and where it comes from), spent, reserved,
    remaining."""
    return BudgetList(budgets=_budgets(request))


@router.put(
    "/budgets/{budget_id:path}/limit",
    response_model=BudgetOut,
    responses={404: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def set_budget_limit(budget_id: str, body: BudgetLimitIn, request: Request) -> BudgetOut:
    """Override the budget's limit; the scheduler enforces it within a few seconds.

    Lowering a limit below what is already spent and reserved holds back new work; nothing
    already dispatched is recalled.
    """
    budget = _known_budget(request, budget_id)
    limit = usd_to_micros(body.limit_usd)
    with store_errors():
        resources_of(request).db.write(
            lambda session: budget_limits.set_limit(session, budget.id, limit)
        )
    return _budgets(request, budget)[0]


@router.delete(
    "/budgets/{budget_id:path}/limit",
    response_model=BudgetOut,
    responses={404: {"model": ErrorBody}},
)
def reset_budget_limit(budget_id: str, request: Request) -> BudgetOut:
    """Remove the override: the budget is back to its limit in broker.toml."""
    budget = _known_budget(request, budget_id)
    with store_errors():
        resources_of(request).db.write(
            lambda session: budget_limits.set_limit(session, budget.id, None)
        )
    return _budgets(request, budget)[0]


@router.get("/alerts", response_model=AlertList, responses={404: {"model": ErrorBody}})
def list_alerts(
    request: Request,
    team: Annotated[str | None, Query(max_length=64, description="Only this team's.")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """The most recent alerts, newest first (the last 1000 are kept)."""
    if team is not None:
        known_team(request, team)
    with store_errors():
        alerts = recent_alerts(resources_of(request).redis, team, limit)
    return AlertList(alerts=[AlertOut.model_validate(a) for a in alerts])
