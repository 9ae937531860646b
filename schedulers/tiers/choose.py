"""Choosing a route's tier for one request, in layers: hint, pin, rules, learned router, default.

See :mod:`broker.config.routes` for the configuration. Every decision says which layer made it,
the learned router's score when it spoke, and why, and is stored with the request and returned
with its result. A learned router that cannot be loaded or run (a missing file, the embedding
extra missing for a router that needs it) never fails a request: the request takes the route's
last, strongest tier and the decision says why, so a failure costs money, never quality.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from broker.config.routes import RouteConfig
from schedulers.tiers import DEFAULT_ROUTER_PATH
from schedulers.tiers.learned import LearnedRouter

log = logging.getLogger(__name__)

_CODE_BLOCK = re.compile(r"```")


@dataclass(frozen=True, slots=True)
class TierDecision:
    route: str
    tier: int
    model: str
    layer: str  # hint | pin | rule | learned | default
    score: float | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def prompt_text(messages: Sequence[Mapping[str, Any]]) -> str:
    return "\n".join(str(m.get("content", "")) for m in messages)


class TierChooser:
    """Per-process: loads each route's learned router once, on first use."""

    def __init__(self, base_dir: Path | None = None) -> None:
        self._base_dir = base_dir
        self._routers: dict[str, tuple[LearnedRouter, float] | Exception] = {}
        self._lock = threading.Lock()

    def choose(
        self,
        route: RouteConfig,
        team: str,
        feature: str,
        messages: Sequence[Mapping[str, Any]],
        max_tokens: int,
        metadata: Mapping[str, Any] | None,
    ) -> TierDecision:
        def decided(tier: int, layer: str, reason: str, score: float | None = None):
            return TierDecision(route.name, tier, route.tiers[tier], layer, score, reason)

        hint = (metadata or {}).get("tier")
        if hint is not None:
            tier = _hinted(route, hint)
            if tier is not None:
                return decided(tier, "hint", f"metadata.tier = {hint!r}")
        pins = [p for p in route.pins if p.matches(team, feature)]
        if pins:
            pin = max(pins, key=lambda p: p.specificity)
            return decided(pin.tier, "pin", f"pinned for team {pin.team} / feature {pin.feature}")
        text = prompt_text(messages)
        for i, rule in enumerate(route.rules):
            if _applies(rule.when, rule.value, text, max_tokens):
                return decided(
                    rule.tier, "rule", f"rules[{i}]: {rule.when} {rule.value or ''}".strip()
                )
        if route.learned != "off":
            learned = self._router(route)
            if isinstance(learned, Exception):
                top = len(route.tiers) - 1
                return decided(
                    top, "default", f"learned router unavailable ({learned}): strongest tier"
                )
            router, threshold = learned
            try:
                score, strong = router.decide(text, threshold)
            except Exception as exc:  # noqa: BLE001 - a router failure takes the plain path
                top = len(route.tiers) - 1
                return decided(top, "default", f"learned router failed ({exc}): strongest tier")
            tier = len(route.tiers) - 1 if strong else 0
            side = "below" if strong else "at or above"
            return decided(
                tier, "learned", f"P(cheaper tier acceptable) {side} {threshold:.3f}", score
            )
        return decided(route.default_tier, "default", "no layer decided")

    def _router(self, route: RouteConfig) -> tuple[LearnedRouter, float] | Exception:
        with self._lock:
            if route.name not in self._routers:
                self._routers[route.name] = self._load(route)
            return self._routers[route.name]

    def _load(self, route: RouteConfig) -> tuple[LearnedRouter, float] | Exception:
        path = DEFAULT_ROUTER_PATH if route.learned == "default" else Path(route.learned)
        if not path.is_absolute() and self._base_dir is not None:
            path = self._base_dir / path
        try:
            router = LearnedRouter.load(path)
            if route.strong_share is not None:
                threshold = router.threshold_for_strong_share(route.strong_share)
            elif route.quality is not None:
                threshold = router.threshold_for_quality(route.quality)
            else:
                threshold = router.threshold
            router.scores(["warm up"])  # fails now, not per request, if it cannot run
        except Exception as exc:  # noqa: BLE001 - reported in every decision it affects
            log.warning("route %s: learned router %s unavailable: %s", route.name, path, exc)
            return exc
        return router, threshold


def _hinted(route: RouteConfig, hint: Any) -> int | None:
    if isinstance(hint, int) and not isinstance(hint, bool) and 0 <= hint < len(route.tiers):
        return hint
    if isinstance(hint, str):
        if hint in route.tiers:
            return route.tiers.index(hint)
        if hint.isdigit() and int(hint) < len(route.tiers):
            return int(hint)
    return None


def _applies(when: str, value: Any, text: str, max_tokens: int) -> bool:
    if when == "code_block":
        return bool(_CODE_BLOCK.search(text))
    if when == "chars_over":
        return len(text) > value
    if when == "max_tokens_over":
        return max_tokens > value
    return re.search(value, text) is not None  # pattern
