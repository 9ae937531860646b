"""Counters behind ``GET /_sim/stats``: what the simulator served, so tests can check the broker.

Requests are bucketed by wall-clock minute (UTC) and wire format, which lets a test assert that
no minute exceeded a provider's RPM. One ``record`` call per response keeps the hot path cheap.

Whether callers honour ``retry-after``: after a 429 that asked a wire format's callers to wait,
a call arriving before the wait is over counts as early, unless it arrives within
``RETRY_GRACE_S`` of the first such 429 (calls already on their way when it went out).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

from workers.simulator.settings import MalformedKind, Wire

#: Calls arriving this soon after a 429 were on their way before the caller could see it.
RETRY_GRACE_S = 0.5


def _iso(ts: float, fmt: str = "%Y-%m-%dT%H:%M:%SZ") -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(fmt)


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._since = time.time()
        self._by_wire: Counter[str] = Counter()
        self._by_model: Counter[str] = Counter()
        self._by_status: Counter[int] = Counter()
        self._by_wire_status: dict[str, Counter[int]] = defaultdict(Counter)
        self._per_minute: dict[int, Counter[str]] = defaultdict(Counter)
        self._malformed: Counter[str] = Counter()
        self._input_tokens = 0
        self._output_tokens = 0
        self._wait_until: dict[str, float] = {}
        self._wait_since: dict[str, float] = {}
        self._asked: Counter[str] = Counter()
        self._early: Counter[str] = Counter()

    def asked_to_wait(self, wire: Wire, seconds: float) -> None:
        """A 429 told this wire format's callers to wait ``seconds``."""
        now = time.monotonic()
        if now >= self._wait_until.get(wire, 0.0):
            self._wait_since[wire] = now
        self._wait_until[wire] = max(self._wait_until.get(wire, 0.0), now + seconds)
        self._asked[wire] += 1

    def arrived(self, wire: Wire) -> None:
        """A call arrived: early if a 429 asked callers to wait until later."""
        now = time.monotonic()
        if now < self._wait_until.get(wire, 0.0) and now > self._wait_since[wire] + RETRY_GRACE_S:
            self._early[wire] += 1

    def record(
        self,
        wire: Wire,
        model: str | None,
        status: int,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
        malformed: MalformedKind | None = None,
    ) -> None:
        """Count one served call. ``model`` is None when the body named none we could read."""
        self._by_wire[wire] += 1
        if model is not None:
            self._by_model[model] += 1
        self._by_status[status] += 1
        self._by_wire_status[wire][status] += 1
        self._per_minute[int(time.time() // 60)][wire] += 1
        if malformed is not None:
            self._malformed[malformed] += 1
        self._input_tokens += input_tokens
        self._output_tokens += output_tokens

    def snapshot(self) -> dict:
        per_minute = {}
        peak: Counter[str] = Counter()
        for minute in sorted(self._per_minute):
            counts = self._per_minute[minute]
            row = {str(wire): counts[wire] for wire in Wire} | {"total": counts.total()}
            per_minute[_iso(minute * 60, "%Y-%m-%dT%H:%MZ")] = row
            for key, value in row.items():
                peak[key] = max(peak[key], value)
        return {
            "since": _iso(self._since),
            "requests": {
                "total": self._by_wire.total(),
                "by_wire": {str(wire): self._by_wire[wire] for wire in Wire},
                "by_model": dict(sorted(self._by_model.items())),
            },
            "responses": {
                "by_status": {str(k): v for k, v in sorted(self._by_status.items())},
                "by_wire_status": {
                    str(wire): {str(k): v for k, v in sorted(self._by_wire_status[wire].items())}
                    for wire in Wire
                },
            },
            "requests_per_minute": per_minute,
            "max_requests_per_minute": {key: peak[key] for key in (*map(str, Wire), "total")},
            "tokens": {"input": self._input_tokens, "output": self._output_tokens},
            "malformed": {str(kind): self._malformed[kind] for kind in MalformedKind},
            "retry_after": {
                "asked": {str(wire): self._asked[wire] for wire in Wire},
                "early_calls": {str(wire): self._early[wire] for wire in Wire},
                "grace_s": RETRY_GRACE_S,
            },
        }
