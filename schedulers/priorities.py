"""Inside a team: ``high``, then ``medium``, then ``low``, with aging so nothing starves.

A request that has waited ``max_wait_s`` or longer is *aged*. Aged requests go oldest first,
but they take turns with the team's fresh higher-priority work rather than jumping all of it:
otherwise a large backlog of old ``low`` requests would in turn starve every new ``high`` one.
So an aged request waits at most about ``max_wait_s`` plus every other pick of its team, and
fresh ``high`` work keeps at least every other pick.

The scheduler sees only the head of each queue (as many entries as it could dispatch this
round), so choosing is independent of how long the queues are; entries are decoded only when
they come up, since most of a peeked window is usually not reached.
"""

from __future__ import annotations

from collections.abc import Iterator

from broker.queues import QueueEntry
from broker.states import PRIORITY_ORDER, Priority


class TeamQueues:
    """The peeked heads of one team's three queues, consumed front to front."""

    def __init__(
        self,
        heads: dict[Priority, list[bytes | str | QueueEntry]],
        *,
        now_ms: int,
        max_wait_ms: int,
    ) -> None:
        self._heads = heads
        self._next = dict.fromkeys(PRIORITY_ORDER, 0)
        self._aged_before = now_ms - max_wait_ms
        self._aged_turn = True

    def peek(self) -> tuple[Priority, QueueEntry] | None:
        """The request this team would send next, or None when its peeked heads are used up."""
        fresh = aged = None
        for priority in PRIORITY_ORDER:
            i = self._next[priority]
            entries = self._heads.get(priority, ())
            if i >= len(entries):
                continue
            entry = entries[i]
            if not isinstance(entry, QueueEntry):
                entry = entries[i] = QueueEntry.decode(entry)
            if fresh is None:
                fresh = (priority, entry)
            if entry.queued_ms <= self._aged_before and (
                aged is None or entry.queued_ms < aged[1].queued_ms
            ):
                aged = (priority, entry)
        if aged is None or aged == fresh:
            return fresh
        return aged if self._aged_turn else fresh

    def cache_readers(self) -> Iterator[QueueEntry]:
        """The peeked entries that may be answered from the response cache, decoded (and kept
        decoded, so :meth:`peek` does not decode them again). A line without a reading cache
        token (``/r`` in it) is skipped undecoded."""
        for entries in self._heads.values():
            for i, entry in enumerate(entries):
                if not isinstance(entry, QueueEntry):
                    raw = entry.decode() if isinstance(entry, bytes) else entry
                    if "/r" not in raw:
                        continue
                    entry = entries[i] = QueueEntry.decode(raw)
                if entry.cache_read:
                    yield entry

    def take(self, priority: Priority) -> None:
        """The entry :meth:`peek` returned for ``priority`` was dispatched (or dropped)."""
        entry = self._heads[priority][self._next[priority]]
        self._next[priority] += 1
        if entry.queued_ms <= self._aged_before:
            self._aged_turn = False
        else:
            self._aged_turn = True

    def taken(self) -> dict[Priority, int]:
        """How many entries to pop from the head of each queue."""
        return {p: n for p, n in self._next.items() if n}
