"""A route's cascade after a cheaper tier answered: keep the answer, or escalate.

The checks (:mod:`workers.validators`) run on the answer of every tier but the route's last.
Their verdict is recorded in the request's route decision (``checks``: tier, model, accepted
or the check that turned it down and why, shadow or not). A turned-down answer escalates the
request to the next tier (:class:`~broker.store.transitions.Escalation`), unless the cascade
is in shadow mode, where the answer stands and only the verdict is kept. When the cascade
names a judge, an answer the checks accept is read by it too (:mod:`workers.judge`), and its
call is recorded and charged with the attempt.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Protocol

from broker.config.broker_toml import BrokerConfig
from broker.config.routes import CascadeConfig, RouteConfig
from broker.store.cascades import Escalation
from broker.store.transitions import Call, Claimed, Outcome
from workers.validators import Verdict, judge


def _reviewing(config: BrokerConfig, claimed: Claimed) -> tuple[RouteConfig, int] | None:
    """The route and tier whose cascade checks this attempt's answer, or None."""
    route = config.route(claimed.route) if claimed.route else None
    if route is None or route.cascade is None or claimed.model not in route.tiers:
        return None
    tier = route.tiers.index(claimed.model)
    return (route, tier) if tier < len(route.tiers) - 1 else None


def may_escalate(config: BrokerConfig, claimed: Claimed) -> bool:
    """This attempt's answer may be turned down and replaced by a later tier's (a cascade not
    in shadow mode checks it): it must not reach its caller before the verdict."""
    reviewing = _reviewing(config, claimed)
    return reviewing is not None and not reviewing[0].cascade.shadow


class AskJudge(Protocol):
    """Makes the judge's call (:mod:`workers.judge`): its verdict, and the calls it made."""

    def __call__(
        self, cascade: CascadeConfig, asked: dict, answer: str
    ) -> tuple[Verdict, tuple[Call, ...]]: ...


def review(
    config: BrokerConfig, claimed: Claimed, outcome: Outcome, ask_judge: AskJudge | None = None
) -> tuple[Outcome, Escalation | None]:
    """The outcome (with the verdict in its route decision, and the judge's calls and cost
    when one was asked) and the escalation, if any."""
    reviewing = _reviewing(config, claimed)
    if reviewing is None:
        return outcome, None
    route, tier = reviewing
    cascade = route.cascade
    verdict = judge(outcome.output, outcome.finish_reason, claimed.payload, cascade.checks)
    if verdict.accept and cascade.judge is not None and ask_judge is not None:
        verdict, calls = ask_judge(cascade, claimed.payload, outcome.output or "")
        outcome = replace(
            outcome,
            calls=outcome.calls + calls,
            cost_micros=outcome.cost_micros + sum(c.cost_micros for c in calls),
        )
    decision = dict(claimed.route_decision or {"route": route.name})
    decision["checks"] = [
        *decision.get("checks", []),
        {
            "tier": tier,
            "model": outcome.model,
            "accept": verdict.accept,
            "check": verdict.check,
            "reason": verdict.reason,
            "shadow": cascade.shadow,
        },
    ]
    if verdict.accept or cascade.shadow:
        return replace(outcome, route_decision=decision), None
    next_model = route.tiers[tier + 1]
    decision.update(tier=tier + 1, model=next_model, escalated=True)
    return outcome, Escalation(next_model, decision)
