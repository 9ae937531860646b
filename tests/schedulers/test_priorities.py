"""Priorities inside a team, with aging: the choice itself (the real path is in test_loop)."""

from __future__ import annotations

from broker.queues import QueueEntry
from broker.states import Priority
from schedulers.priorities import TeamQueues

NOW = 1_000_000_000


def entries(prefix: str, n: int, queued_ms: int) -> list[QueueEntry]:
    return [QueueEntry(f"{prefix}{i}", "gpt-4o-mini", 10, 10, queued_ms) for i in range(n)]


def drain(queues: TeamQueues, n: int) -> list[str]:
    out = []
    for _ in range(n):
        head = queues.peek()
        if head is None:
            break
        priority, entry = head
        queues.take(priority)
        out.append(entry.request_id)
    return out


def test_high_then_medium_then_low():
    heads = {
        Priority.LOW: entries("l", 2, NOW),
        Priority.MEDIUM: entries("m", 2, NOW),
        Priority.HIGH: entries("h", 2, NOW),
    }
    queues = TeamQueues(heads, now_ms=NOW, max_wait_ms=60_000)
    assert drain(queues, 10) == ["h0", "h1", "m0", "m1", "l0", "l1"]
    assert queues.taken() == {Priority.HIGH: 2, Priority.MEDIUM: 2, Priority.LOW: 2}


def test_aged_low_takes_turns_with_fresh_high():
    heads = {
        Priority.HIGH: entries("h", 4, NOW),
        Priority.LOW: entries("l", 4, NOW - 61_000),  # waited past max_wait
    }
    queues = TeamQueues(heads, now_ms=NOW, max_wait_ms=60_000)
    assert drain(queues, 8) == ["l0", "h0", "l1", "h1", "l2", "h2", "l3", "h3"]


def test_aged_requests_go_oldest_first():
    heads = {
        Priority.MEDIUM: entries("m", 1, NOW - 70_000),
        Priority.LOW: entries("l", 1, NOW - 90_000),
    }
    queues = TeamQueues(heads, now_ms=NOW, max_wait_ms=60_000)
    assert drain(queues, 2) == ["l0", "m0"]


def test_cache_readers_are_the_lines_that_may_read_decoded_once():
    key = "a" * 64
    reads = QueueEntry("r0", "gpt-4o-mini", 10, 10, NOW, cache=f"{key}/60/rw")
    writes_only = QueueEntry("w0", "gpt-4o-mini", 10, 10, NOW, cache=f"{key}/60/w")
    plain = QueueEntry("p0", "gpt-4o-mini", 10, 10, NOW)
    heads = {Priority.HIGH: [reads.encode().encode(), writes_only.encode(), plain.encode()]}
    queues = TeamQueues(heads, now_ms=NOW, max_wait_ms=60_000)
    [found] = queues.cache_readers()
    assert found == reads
    assert queues.peek() == (Priority.HIGH, found)
    assert queues.peek()[1] is found  # kept decoded: peek did not decode the line again
