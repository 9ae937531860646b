"""What happens to a request that does not fit a budget: the team's ``budget_policy``.

``reject``: it fails with ``budget_exceeded``, naming the budget, its limit and what is spent.
``hold``: it waits in ``waiting_budget`` (:mod:`schedulers.holding`) until the window resets or
the limit is raised. ``downgrade``: it runs on the first of :func:`downgrades` (later in its
model's chain, then, for a request that named a route, the route's cheaper tiers) that is
cheaper, has room and fits every budget; if none does, it is held.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from broker.config.broker_toml import BrokerConfig
from broker.queues import QueueEntry
from schedulers.budgets import BudgetRound, Scope, cost_bound
from schedulers.capacity import Room


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Literal["go", "reject", "hold"]
    provider: str = ""
    model: str = ""
    amount: int = 0
    scopes: tuple[Scope, ...] = ()
    reason: str = ""


def decide(
    config: BrokerConfig,
    budgets: BudgetRound,
    team: str,
    entry: QueueEntry,
    route: tuple[str, str],
    room: Room,
) -> Verdict:
    """The budget verdict for ``entry`` about to go to ``route`` (provider, model), which has
    room; a downgrade also needs room on its model's provider."""
    scopes = tuple(budgets.scopes(team, entry))
    provider, model = route
    amount = cost_bound(config, model, entry)
    over = budgets.over(scopes, amount)
    if over is None:
        return Verdict("go", provider, model, amount, scopes)
    policy = config.team(team).budget_policy if config.has_team(team) else "hold"
    if policy == "downgrade":
        for cheaper in downgrades(config, entry):
            cost = cost_bound(config, cheaper, entry)
            target = config.model(cheaper).provider
            if (
                cost < amount
                and room.fits(target, cheaper, entry.est_tokens, team, entry.feature)
                and budgets.over(scopes, cost) is None
            ):
                return Verdict("go", target, cheaper, cost, scopes)
    action = "reject" if policy == "reject" else "hold"
    return Verdict(action, reason=budgets.explain(over, amount))


def downgrades(config: BrokerConfig, entry: QueueEntry) -> list[str]:
    """The models ``entry`` may be moved to under ``downgrade``, the most capable first: the
    rest of its model's fallback chain, then, when it named a route, the route's tiers below
    its own, the nearest first, each with its chain. (A cascade reviews the answer as for the
    tier the request is on, so a budget downgrade is never escalated back up.)"""
    models = list(config.model(entry.model).chain[1:])
    route = config.route(entry.route) if entry.route != "-" else None
    if route is not None and entry.model in route.tiers:
        for tier in reversed(route.tiers[: route.tiers.index(entry.model)]):
            models += [m for m in config.model(tier).chain if m not in models]
    return [m for m in models if m != entry.model]
