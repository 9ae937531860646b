"""The team priority queues in Redis: what submission pushes and the scheduler pops.

One list per (team, priority), oldest first. An entry carries what the scheduler needs to decide
without touching the database: the request id, the model asked for, an estimate of its input
tokens, its ``max_tokens`` and when it was queued (for aging). Encoded as one short line,
``"<id> <model> <est_in> <max_out> <queued_ms>"``, about 50 bytes.
"""

from __future__ import annotations

import time
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
    est_input: int
    max_output: int
    queued_ms: int

    @property
    def est_tokens(self) -> int:
        """Tokens the request can use at most, as providers count it against TPM."""
        return self.est_input + self.max_output

    def encode(self) -> str:
        return f"{self.request_id} {self.model} {self.est_input} {self.max_output} {self.queued_ms}"

    @classmethod
    def decode(cls, raw: bytes | str) -> QueueEntry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        request_id, model, est_in, max_out, queued_ms = text.split(" ")
        return cls(request_id, model, int(est_in), int(max_out), int(queued_ms))


def now_ms() -> int:
    return int(time.time() * 1000)


def estimate_input_tokens(messages: list[dict]) -> int:
    """Input token estimate for scheduling: about 4 UTF-8 bytes per token, plus framing."""
    prompt_bytes = sum(len(m["content"].encode()) for m in messages)
    return prompt_bytes // 4 + 4 * len(messages)


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
        _announce(pipe, team_id)
        pipe.execute()


def push_front(client: redis.Redis, team_id: str, priority: Priority, entry: QueueEntry) -> None:
    """Put a request back at the head of its queue (it keeps its place and its age)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.lpush(keys.team_queue(team_id, priority), entry.encode())
        _announce(pipe, team_id)
        pipe.execute()


def _announce(pipe: redis.client.Pipeline, team_id: str) -> None:
    pipe.sadd(keys.backlogged_teams(), team_id)
    pipe.lpush(keys.scheduler_wake(), "submit")
    pipe.ltrim(keys.scheduler_wake(), 0, 0)
