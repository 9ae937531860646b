"""Counters behind ``GET /_sim/stats``: what the simulator served, so tests can check the broker.

Requests are bucketed by wall-clock minute (UTC) and wire format, which lets a test assert that
no minute exceeded a provider's RPM. One ``record`` call per response keeps the hot path cheap.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from datetime import UTC, datetime

from workers.simulator.settings import MalformedKind, Wire


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
        }
