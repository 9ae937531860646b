"""Whether a team may submit a batch now: the 429s of submission, decided before anything is written.

A batch is refused when its API key is over its submissions per minute, when its team or
feature is over its runaway guard (requests or tokens per minute, :mod:`schedulers.ratelimits`),
or, under the ``reject`` budget policy, when it would go into a budget already spent
(:mod:`schedulers.budgets`). The :class:`~broker.submission.submitter.Submitter` holds one
:class:`Admission`; it is apart because it reads only Redis (and the budget limits table).
"""

from __future__ import annotations

import redis

from broker.config.broker_toml import BrokerConfig, TeamConfig
from broker.errors import ServiceUnavailable, TooManyRequests
from broker.money import format_usd
from broker.store import Database
from broker.store.models import utcnow
from schedulers.budgets import BudgetLimits, Budgets
from schedulers.ratelimits import RateLimits


class Admission:
    """The submission rate limits and the ``reject`` budget policy, for one broker config."""

    def __init__(
        self,
        client: redis.Redis,
        db: Database,
        config: BrokerConfig,
        submissions_per_minute: int,
    ) -> None:
        self._limits = RateLimits(client, config)
        self._budgets = Budgets(client, db, config, BudgetLimits(db, config))
        self._submissions_per_minute = submissions_per_minute  # per API key; 0: no limit

    def admit(
        self, team: TeamConfig, feature: str, count: int, tokens: int, key_sha256: str | None
    ) -> None:
        """Refuse with 429 ``count`` requests of ``tokens`` that the team (through the key
        ``key_sha256``, when given) may not submit now; 503 when Redis does not answer."""
        try:
            if key_sha256 is not None and self._submissions_per_minute:
                self._admit_key(key_sha256)
            wait = self._limits.admit(team.id, feature, count, tokens)
            if wait is not None:
                raise TooManyRequests(
                    f"team {team.id!r} (feature {feature!r}) is over its submission rate "
                    f"limit; retry in {wait:.0f} s",
                    type_="rate_limited",
                    retry_after=wait,
                )
            if team.budget_policy != "reject":
                return
            scopes = self._budgets.scopes(team.id, feature, None)
            state = self._budgets.snapshot(scopes)
        except redis.RedisError as exc:
            raise ServiceUnavailable(f"the queue (Redis) is unreachable: {exc}") from exc
        for scope in scopes:
            spent, reserved = state[scope.key]
            if spent + reserved >= scope.limit:
                assert scope.end is not None  # team and feature budgets have windows
                raise TooManyRequests(
                    f"budget {scope.label} is spent: {format_usd(spent)} spent and "
                    f"{format_usd(reserved)} reserved of {format_usd(scope.limit)}; it renews at "
                    f"{scope.end.isoformat()}",
                    type_="budget_exceeded",
                    retry_after=(scope.end - utcnow()).total_seconds(),
                )

    def _admit_key(self, key_sha256: str) -> None:
        per_minute = self._submissions_per_minute
        wait = self._limits.admit_key(key_sha256, per_minute)
        if wait is not None:
            raise TooManyRequests(
                f"this API key is over its {per_minute} submissions per minute "
                f"(submissions_per_minute); retry in {max(1, round(wait))} s",
                type_="rate_limited",
                retry_after=wait,
            )
