"""Which team is served next.

For now a rotating round robin: every backlogged team gets one request per turn, starting
after the team served last. Weighted fair queueing (virtual token counters) replaces this
policy behind the same two calls: ``order`` and ``served``.
"""

from __future__ import annotations

from collections.abc import Sequence


class RoundRobin:
    def __init__(self) -> None:
        self._last: str | None = None

    def order(self, backlogged: Sequence[str]) -> list[str]:
        """Backlogged teams in the order they should be offered a slot this round."""
        teams = sorted(backlogged)
        if self._last is None or not teams:
            return teams
        start = next((i for i, t in enumerate(teams) if t > self._last), 0)
        return teams[start:] + teams[:start]

    def served(self, team: str, est_tokens: int) -> None:
        """A request of ``team`` estimated at ``est_tokens`` was dispatched."""
        self._last = team
