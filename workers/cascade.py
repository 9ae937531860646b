"""A route's cascade after a cheaper tier answered: keep the answer, or escalate.

The checks (:mod:`workers.validators`) run on the answer of every tier but the route's last.
Their verdict is recorded in the request's route decision (``checks``: tier, model, accepted
or the check that turned it down and why, shadow or not). A turned-down answer escalates the
request to the next tier (:class:`~broker.store.transitions.Escalation`), unless the cascade
is in shadow mode, where the answer stands and only the verdict is kept.
"""

from __future__ import annotations

from dataclasses import replace

from broker.config.broker_toml import BrokerConfig
from broker.store.cascades import Escalation
from broker.store.transitions import Claimed, Outcome
from workers.validators import judge


def review(
    config: BrokerConfig, claimed: Claimed, outcome: Outcome
) -> tuple[Outcome, Escalation | None]:
    """The outcome (with the verdict in its route decision) and the escalation, if any."""
    route = config.route(claimed.route) if claimed.route else None
    if route is None or route.cascade is None or claimed.model not in route.tiers:
        return outcome, None
    tier = route.tiers.index(claimed.model)
    if tier == len(route.tiers) - 1:
        return outcome, None
    verdict = judge(outcome.output, outcome.finish_reason, claimed.payload, route.cascade.checks)
    decision = dict(claimed.route_decision or {"route": route.name})
    decision["checks"] = [
        *decision.get("checks", []),
        {
            "tier": tier,
            "model": outcome.model,
            "accept": verdict.accept,
            "check": verdict.check,
            "reason": verdict.reason,
            "shadow": route.cascade.shadow,
        },
    ]
    if verdict.accept or route.cascade.shadow:
        return replace(outcome, route_decision=decision), None
    next_model = route.tiers[tier + 1]
    decision.update(tier=tier + 1, model=next_model, escalated=True)
    return outcome, Escalation(next_model, decision)
