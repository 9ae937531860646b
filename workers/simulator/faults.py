"""Chaos decisions: outages, injected server errors, latency and malformed bodies.

Every random pick comes from one ``random.Random`` seeded by ``settings.seed`` so a sequential run
is reproducible. The text itself never uses this generator (see ``text.py``): faults may vary with
request order, answers may not.
"""

from __future__ import annotations

import json
import math
import random
import time

from workers.simulator.settings import MalformedKind, OutageWindow, SimulatorSettings, Wire

_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)


class FaultPlan:
    """The fault knobs of the current settings plus the state they need (clock origin, rng)."""

    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._epoch = time.monotonic()
        self._malformed_turn = 0

    def reconfigure(self, settings: SimulatorSettings, *, outages_changed: bool) -> None:
        """Adopt new settings; outage times restart from now when the outages were replaced."""
        if settings.seed != self.settings.seed:
            self._rng = random.Random(settings.seed)
        if outages_changed:
            self._epoch = time.monotonic()
        self.settings = settings

    def outage(self, wire: Wire, model: str) -> OutageWindow | None:
        if not self.settings.outages:
            return None
        elapsed = time.monotonic() - self._epoch
        for window in self.settings.outages:
            if window.covers(elapsed, wire, model):
                return window
        return None

    def roll_error(self) -> bool:
        rate = self.settings.error_rate
        return rate > 0 and (rate >= 1 or self._rng.random() < rate)

    def choose(self, options: tuple[int, ...]) -> int:
        return self._rng.choice(options)

    def latency_s(self) -> float:
        """Lognormal around the median ``latency_ms``; 0 when no latency is configured."""
        median = self.settings.latency_ms
        if median <= 0:
            return 0.0
        sigma = self.settings.latency_sigma
        factor = math.exp(self._rng.gauss(0.0, sigma)) if sigma > 0 else 1.0
        return median * factor / 1000.0

    def roll_malformed(self) -> MalformedKind | None:
        """Whether to break this 200, and how: kinds take turns so every kind shows up."""
        rate = self.settings.malformed_rate
        if rate <= 0 or (rate < 1 and self._rng.random() >= rate):
            return None
        kinds = self.settings.malformed_kinds
        kind = kinds[self._malformed_turn % len(kinds)]
        self._malformed_turn += 1
        return kind


def malformed_body(kind: MalformedKind, payload: dict) -> tuple[bytes, str]:
    """A broken rendering of ``payload`` and the content type to send it with."""
    if kind is MalformedKind.INVALID_JSON:
        return repr(payload).encode("utf-8"), "application/json"
    if kind is MalformedKind.TRUNCATED:
        body = json.dumps(payload).encode("utf-8")
        return body[: len(body) // 2], "application/json"
    return _HTML_PAGE, "text/html; charset=utf-8"
