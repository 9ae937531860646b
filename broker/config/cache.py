"""``[cache]`` in broker.toml: which requests may be answered from the response cache, for how
long, and who shares the answers.

A policy is resolved per request from the most specific entry that matches it: team and
feature, then feature, then team, then ``[cache]`` itself::

    [cache]
    mode = "exact"          # off | exact | semantic (semantic also does exact)
    ttl_s = 86400
    scope = "team"          # team | shared (every team: public content only) | user

    [[cache.policies]]
    feature = "chatbot"
    mode = "semantic"
    max_wrong_hit_rate = 0.01   # what the operator accepts; never a cosine number

The scope says who may receive an answer: ``team`` (the default) the team that asked; ``user``
the same team's requests with the same ``metadata.user_id`` (a request without one is not
cached); ``shared`` every team's requests for that feature, for public content only.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

CacheMode = Literal["off", "exact", "semantic"]
CacheScope = Literal["team", "shared", "user"]
_RESOLVED_MAX = 4_096


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CachePolicy(_Strict):
    """How one team's or feature's requests are cached."""

    mode: CacheMode = "exact"
    ttl_s: int = Field(
        default=86_400, ge=1, le=90 * 86_400, description="How long an answer is kept."
    )
    scope: CacheScope = "team"
    max_wrong_hit_rate: float = Field(
        default=0.01,
        gt=0,
        le=0.2,
        description="Semantic mode: the share of non-equivalent near misses the cache may "
        "wrongly answer, as estimated by the embedder's calibration.",
    )


class PolicyOverride(_Strict):
    """A ``[[cache.policies]]`` entry: a team, a feature, or both, and what differs for them."""

    team: str | None = None
    feature: str | None = None
    mode: CacheMode | None = None
    ttl_s: int | None = Field(default=None, ge=1, le=90 * 86_400)
    scope: CacheScope | None = None
    max_wrong_hit_rate: float | None = Field(default=None, gt=0, le=0.2)

    @model_validator(mode="after")
    def _names_something(self) -> PolicyOverride:
        if self.team is None and self.feature is None:
            raise ValueError("a cache policy names a team, a feature or both")
        return self

    @property
    def specificity(self) -> int:
        return (2 if self.feature is not None else 0) + (1 if self.team is not None else 0)


class CacheConfig(CachePolicy):
    """``[cache]``: the default policy and the overrides."""

    mode: CacheMode = "exact"
    policies: list[PolicyOverride] = Field(default_factory=list)

    @cached_property
    def _resolved(self) -> dict[tuple[str, str], CachePolicy]:
        return {}  # a cached property: pydantic's private attributes are slow to read

    def policy(self, team: str, feature: str) -> CachePolicy:
        """The policy for a team's feature: the overrides that match, least specific first.
        Resolved once per pair (asked for every request of a batch); the pairs remembered are
        bounded, as feature names are the callers' to choose."""
        found = self._resolved.get((team, feature))
        if found is None:
            if len(self._resolved) >= _RESOLVED_MAX:
                self._resolved.clear()
            found = self._resolved[(team, feature)] = self._resolve(team, feature)
        return found

    def _resolve(self, team: str, feature: str) -> CachePolicy:
        fields = {
            "mode": self.mode,
            "ttl_s": self.ttl_s,
            "scope": self.scope,
            "max_wrong_hit_rate": self.max_wrong_hit_rate,
        }
        matching = [
            p for p in self.policies if p.team in (None, team) and p.feature in (None, feature)
        ]
        for override in sorted(matching, key=lambda p: p.specificity):
            fields.update(
                {k: v for k, v in override.model_dump().items() if k in fields and v is not None}
            )
        return CachePolicy(**fields)
