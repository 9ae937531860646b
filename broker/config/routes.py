"""``[[routes]]`` in broker.toml: virtual models that pick the cheapest tier that answers well.

A request names a route as its ``model`` (for example ``auto``), or leaves ``model`` out and
takes its team's or feature's default route. The route's tiers are models of the catalog,
cheapest first, each with its own fallback chain. A tier is chosen in layers, the first that
decides wins (:mod:`schedulers.tiers.choose`):

1. a hint: the request's ``metadata.tier`` (a tier's index or model name);
2. a pin: ``[[routes.pins]]`` for a team and/or feature (moderation and classification to the
   small tier, say);
3. rules, in order: ``code_block`` (the prompt holds a fenced code block), ``chars_over``
   (prompt characters), ``max_tokens_over``, ``pattern`` (a regular expression on the prompt);
4. the learned router (``learned = "default"``: the shipped one; a path: one trained with
   ``inference-broker router train``; ``"off"``: none), calibrated to ``strong_share`` or
   ``quality``; it chooses between the first and the last tier;
5. otherwise ``default_tier``.

::

    [[routes]]
    name = "auto"
    tiers = ["gpt-4o-mini", "gpt-4o"]
    rules = [{ when = "code_block", tier = 1 }, { when = "max_tokens_over", value = 2000, tier = 1 }]
    pins = [{ feature = "classification", tier = 0 }]
    learned = "default"
    quality = 0.95
    default_for = [{ team = "product" }]
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RouteRule(_Strict):
    when: Literal["code_block", "chars_over", "max_tokens_over", "pattern"]
    value: int | str | None = None
    tier: int = Field(ge=0)

    @model_validator(mode="after")
    def _value_fits(self) -> RouteRule:
        if self.when in ("chars_over", "max_tokens_over") and not isinstance(self.value, int):
            raise ValueError(f"a {self.when} rule needs an integer value")
        if self.when == "pattern":
            if not isinstance(self.value, str):
                raise ValueError("a pattern rule needs a regular expression as value")
            try:
                re.compile(self.value)
            except re.error as exc:
                raise ValueError(f"pattern {self.value!r} does not compile: {exc}") from exc
        return self


class RouteTarget(_Strict):
    """A team, a feature, or both (a pin, or who takes the route by default)."""

    team: str | None = None
    feature: str | None = None

    @model_validator(mode="after")
    def _names_something(self) -> RouteTarget:
        if self.team is None and self.feature is None:
            raise ValueError("name a team, a feature or both")
        return self

    def matches(self, team: str, feature: str) -> bool:
        return self.team in (None, team) and self.feature in (None, feature)

    @property
    def specificity(self) -> int:
        return (2 if self.feature is not None else 0) + (1 if self.team is not None else 0)


class RoutePin(RouteTarget):
    tier: int = Field(ge=0)


Check = Literal["empty", "refusal", "truncated", "json", "answer_format"]
JUDGE_FRAMING_BYTES = 1024
"""What the judge's request adds to the request and answer it reads (its instructions and
the tags around them), in bytes, with room: part of the judge's cost bound."""


class CascadeConfig(_Strict):
    """A cheaper tier answers first; the checks accept its answer or escalate the request to
    the next tier (through the scheduler: a fresh reservation, fairness, limits). With
    ``shadow`` the verdicts are recorded and nothing escalates, to calibrate before acting.

    ``judge`` names a chat model of the catalog that reads what the checks accepted and says
    whether it answers the request (:mod:`workers.judge`); its call is billed to the request,
    and the reservation covers it."""

    checks: list[Check] = Field(
        default_factory=lambda: ["empty", "refusal", "truncated", "json", "answer_format"]
    )
    shadow: bool = False
    judge: str | None = Field(default=None, description="A small chat model that judges.")
    judge_max_tokens: int = Field(
        default=200, ge=16, le=4096, description="The judge's verdict and its reason."
    )


class RouteConfig(_Strict):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    tiers: list[str] = Field(min_length=2, description="Models, cheapest first.")
    rules: list[RouteRule] = Field(default_factory=list)
    pins: list[RoutePin] = Field(default_factory=list)
    learned: str = Field(
        default="default", description='"default" (the shipped router), "off", or a path.'
    )
    strong_share: float | None = Field(default=None, ge=0, le=1)
    quality: float | None = Field(default=None, gt=0, le=1)
    default_tier: int = Field(default=0, ge=0)
    default_for: list[RouteTarget] = Field(default_factory=list)
    cascade: CascadeConfig | None = Field(
        default=None, description="Validate cheaper tiers' answers and escalate what fails."
    )

    @field_validator("tiers")
    @classmethod
    def _distinct(cls, tiers: list[str]) -> list[str]:
        if len(set(tiers)) != len(tiers):
            raise ValueError("a model may be one tier only")
        return tiers

    @model_validator(mode="after")
    def _tiers_exist(self) -> RouteConfig:
        top = len(self.tiers) - 1
        tiers = [(f"rules[{i}].tier", r.tier) for i, r in enumerate(self.rules)]
        tiers += [(f"pins[{i}].tier", p.tier) for i, p in enumerate(self.pins)]
        tiers.append(("default_tier", self.default_tier))
        for where, tier in tiers:
            if tier > top:
                raise ValueError(f"{where} is {tier}; the route has tiers 0 to {top}")
        if self.strong_share is not None and self.quality is not None:
            raise ValueError("calibrate the learned router to strong_share or quality, not both")
        return self
