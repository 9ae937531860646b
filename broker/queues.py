"""The team priority queues in Redis: what submission pushes and the scheduler pops.

One list per (team, priority). An entry carries what the scheduler needs to decide without
touching the database: the request id, the model asked for and an estimate of its tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import redis

from broker import keys
from broker.states import Priority

_PUSH_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class QueueEntry:
    request_id: str
    model: str
    est_tokens: int

    def encode(self) -> str:
        return f"{self.request_id} {self.model} {self.est_tokens}"

    @classmethod
    def decode(cls, raw: bytes | str) -> QueueEntry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        request_id, model, est = text.split(" ")
        return cls(request_id, model, int(est))


def estimate_tokens(messages: list[dict], max_tokens: int) -> int:
    """Token estimate for scheduling: about 4 UTF-8 bytes per prompt token, plus max_tokens."""
    prompt_bytes = sum(len(m["content"].encode()) for m in messages)
    return prompt_bytes // 4 + 4 * len(messages) + max_tokens


def push(client: redis.Redis, team_id: str, entries: Iterable[tuple[Priority, QueueEntry]]) -> None:
    """Append entries to the team's queues and wake the scheduler, in one MULTI/EXEC."""
    by_priority: dict[Priority, list[str]] = {}
    for priority, entry in entries:
        by_priority.setdefault(priority, []).append(entry.encode())
    with client.pipeline(transaction=True) as pipe:
        for priority, encoded in by_priority.items():
            key = keys.team_queue(team_id, priority)
            for start in range(0, len(encoded), _PUSH_CHUNK):
                pipe.rpush(key, *encoded[start : start + _PUSH_CHUNK])
        pipe.sadd(keys.backlogged_teams(), team_id)
        pipe.lpush(keys.scheduler_wake(), "submit")
        pipe.ltrim(keys.scheduler_wake(), 0, 0)
        pipe.execute()
