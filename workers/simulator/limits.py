"""Sliding-window RPM/TPM limits, one window per wire format, enforced in process.

A sliding window (rather than a token bucket) makes the limit exact and easy to assert: within
any 60 s span the simulator never admits more than ``rpm`` requests or ``tpm`` tokens. A request
costs its input plus output tokens, the same numbers its ``usage`` reports.

All methods run without awaiting, so the single event loop needs no lock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

WINDOW_S = 60.0
# Reported as the limit when none is configured, so the headers are present on every response.
UNLIMITED_REQUESTS = 1_000_000
UNLIMITED_TOKENS = 1_000_000_000


class LimitKind(StrEnum):
    REQUESTS = "requests"
    TOKENS = "tokens"


@dataclass(frozen=True, slots=True)
class WindowState:
    """What the rate-limit headers report. Resets are seconds until the oldest entry expires."""

    limit_requests: int
    remaining_requests: int
    reset_requests_s: float
    limit_tokens: int
    remaining_tokens: int
    reset_tokens_s: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request the window did not admit, and how long until it would be."""

    kind: LimitKind
    limit: int
    used: int
    requested: int
    retry_after_s: float


class SlidingWindow:
    """Admitted requests of the last 60 s as ``(monotonic time, tokens)``."""

    def __init__(self, window_s: float = WINDOW_S) -> None:
        self._window_s = window_s
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    def _expire(self, now: float) -> None:
        horizon = now - self._window_s
        events = self._events
        while events and events[0][0] <= horizon:
            self._tokens -= events.popleft()[1]

    def _wait_for_requests(self, now: float, rpm: int) -> float:
        """Seconds until fewer than ``rpm`` requests remain in the window."""
        excess = len(self._events) - rpm
        return self._events[excess][0] + self._window_s - now

    def _wait_for_tokens(self, now: float, tpm: int, tokens: int) -> float:
        """Seconds until ``tokens`` more fit under ``tpm``; a full window if they never fit."""
        if tokens > tpm:
            return self._window_s
        must_free = self._tokens + tokens - tpm
        for at, used in self._events:
            must_free -= used
            if must_free <= 0:
                return at + self._window_s - now
        return self._window_s

    def try_admit(
        self, now: float, tokens: int, rpm: int | None, tpm: int | None
    ) -> Refusal | None:
        """Admit a request costing ``tokens`` unless it would break a limit."""
        self._expire(now)
        if rpm is not None and len(self._events) >= rpm:
            wait = self._wait_for_requests(now, rpm)
            return Refusal(LimitKind.REQUESTS, rpm, len(self._events), 1, max(wait, 0.001))
        if tpm is not None and self._tokens + tokens > tpm:
            wait = self._wait_for_tokens(now, tpm, tokens)
            return Refusal(LimitKind.TOKENS, tpm, self._tokens, tokens, max(wait, 0.001))
        self._events.append((now, tokens))
        self._tokens += tokens
        return None

    def state(self, now: float, rpm: int | None, tpm: int | None) -> WindowState:
        self._expire(now)
        reset = self._events[0][0] + self._window_s - now if self._events else 0.0
        limit_requests = rpm or UNLIMITED_REQUESTS
        limit_tokens = tpm or UNLIMITED_TOKENS
        return WindowState(
            limit_requests=limit_requests,
            remaining_requests=max(limit_requests - len(self._events), 0),
            reset_requests_s=reset,
            limit_tokens=limit_tokens,
            remaining_tokens=max(limit_tokens - self._tokens, 0),
            reset_tokens_s=reset,
        )


def go_duration(seconds: float) -> str:
    """Format like Go's ``time.Duration.String``, as OpenAI's reset headers do: ``6ms``, ``1.5s``,
    ``6m0s``, ``1h2m3s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, secs = divmod(round(seconds, 3), 60)
    hours, minutes = divmod(int(minutes), 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{text}"
    if minutes:
        return f"{minutes}m{text}"
    return text
