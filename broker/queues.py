"""The team priority queues in Redis: what submission pushes and the scheduler pops.

One list per (team, priority), oldest first. An entry carries what the scheduler needs to decide
without touching the database: the request id, the model asked for, an upper bound of its input
tokens, its ``max_tokens``, when it was queued (for aging), its feature and trace (for budgets).
A request handed back after a failure also carries where in its model's chain it goes next;
a cacheable one its cache token; one that named a route (``auto``) the route, whose cheaper
tiers the ``downgrade`` budget policy may use. Encoded as one short line, ``"<id> <model>
<input_bound> <max_out> <queued_ms> <feature> <trace>"`` (``-`` for no trace), then
`` <chain index> <cache> <route>`` as far as needed (``-`` for none), about 70 bytes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from broker import redis_keys
from broker.states import Priority

_PUSH_CHUNK = 5_000


@dataclass(frozen=True, slots=True)
class QueueEntry:
    request_id: str
    model: str
    input_bound: int
    max_output: int
    queued_ms: int
    feature: str = "-"
    trace_id: str = "-"
    chain_index: int = 0
    cache: str = "-"  # "<key>/<ttl_s>/<r|w|rw>" (broker.submission), "-" when not cached
    route: str = "-"  # the route the request named (its model is one of the route's tiers)

    @property
    def cache_key(self) -> str | None:
        """The response cache key of a cacheable request (:mod:`broker.cache.exact`)."""
        return None if self.cache == "-" else self.cache.partition("/")[0]

    @property
    def cache_ttl_s(self) -> int:
        return int(self.cache.split("/")[1]) if self.cache != "-" else 0

    @property
    def cache_read(self) -> bool:
        """It may be answered from the cache, or wait for an identical request's call."""
        return self.cache != "-" and "r" in self.cache.rsplit("/", 1)[1]

    @property
    def cache_store(self) -> bool:
        """Its answer may be kept (and so it may lead a single flight)."""
        return self.cache != "-" and "w" in self.cache.rsplit("/", 1)[1]

    @property
    def est_input(self) -> int:
        """Likely input tokens (about four bytes each), for fairness and rate limits."""
        return self.input_bound // 4

    @property
    def est_tokens(self) -> int:
        """Tokens the request is expected to count against a provider's TPM."""
        return self.est_input + self.max_output

    @property
    def trace(self) -> str | None:
        return None if self.trace_id == "-" else self.trace_id

    def encode(self) -> str:
        line = (
            f"{self.request_id} {self.model} {self.input_bound} {self.max_output} "
            f"{self.queued_ms} {self.feature} {self.trace_id}"
        )
        if self.route != "-":
            return f"{line} {self.chain_index} {self.cache} {self.route}"
        if self.cache != "-":
            return f"{line} {self.chain_index} {self.cache}"
        return f"{line} {self.chain_index}" if self.chain_index else line

    @classmethod
    def decode(cls, raw: bytes | str) -> QueueEntry:
        text = raw.decode() if isinstance(raw, bytes) else raw
        rid, model, bound, max_out, queued_ms, feature, trace, *rest = text.split(" ")
        return cls(
            rid,
            model,
            int(bound),
            int(max_out),
            int(queued_ms),
            feature,
            trace,
            int(rest[0]) if rest else 0,
            rest[1] if len(rest) > 1 else "-",
            rest[2] if len(rest) > 2 else "-",
        )


def now_ms() -> int:
    return int(time.time() * 1000)


#: Tokens a chat format may add around each message and before the reply (roles, separators);
#: real formats use 3-7.
FRAMING_TOKENS = 8


def input_token_bound(messages: list[dict]) -> int:
    """An upper bound of the prompt's tokens: a byte-level BPE token is at least one UTF-8
    byte, so the byte count bounds the text, plus framing per message and for the reply."""
    prompt_bytes = sum(len(m["content"].encode()) for m in messages)
    return prompt_bytes + FRAMING_TOKENS * (len(messages) + 1)


def payload_input_bound(payload: Mapping[str, Any]) -> int:
    """:func:`input_token_bound` of a stored request payload: a chat request's messages, or an
    embedding request's texts (``input``), each text framed like a message. A ``json_schema``
    response format counts as one more message: providers put the schema in the prompt."""
    if "input" in payload:
        texts = payload["input"]
        return sum(len(t.encode()) for t in texts) + FRAMING_TOKENS * len(texts)
    bound = input_token_bound(payload["messages"])
    form = payload.get("response_format")
    if form and form.get("type") == "json_schema":
        schema = json.dumps(form["json_schema"], separators=(",", ":"), ensure_ascii=False)
        bound += len(schema.encode()) + FRAMING_TOKENS
    return bound


def push(client: redis.Redis, team_id: str, entries: Iterable[tuple[Priority, QueueEntry]]) -> None:
    """Append entries to the team's queues and wake the scheduler, in one MULTI/EXEC."""
    by_priority: dict[Priority, list[str]] = {}
    for priority, entry in entries:
        by_priority.setdefault(priority, []).append(entry.encode())
    with client.pipeline(transaction=True) as pipe:
        for priority, encoded in by_priority.items():
            key = redis_keys.team_queue(team_id, priority)
            for start in range(0, len(encoded), _PUSH_CHUNK):
                pipe.rpush(key, *encoded[start : start + _PUSH_CHUNK])
        _announce(pipe, team_id)
        pipe.execute()


def push_front(
    client: redis.Redis, team_id: str, priority: Priority, entries: Sequence[QueueEntry]
) -> None:
    """Put requests back at the head of their queue, in this order (they keep their age)."""
    if not entries:
        return
    with client.pipeline(transaction=True) as pipe:
        # LPUSH puts each argument at the head in turn: the last one pushed ends up first.
        encoded = [e.encode() for e in reversed(entries)]
        for start in range(0, len(encoded), _PUSH_CHUNK):
            pipe.lpush(
                redis_keys.team_queue(team_id, priority), *encoded[start : start + _PUSH_CHUNK]
            )
        _announce(pipe, team_id)
        pipe.execute()


def encode_set_aside(priority: Priority, entry: QueueEntry) -> str:
    """One line of a set-aside list (held by a budget, parked behind breakers): the entry and
    the priority it goes back to."""
    return f"{priority.value} {entry.encode()}"


def decode_set_aside(raw: bytes | str) -> tuple[Priority, QueueEntry]:
    text = raw.decode() if isinstance(raw, bytes) else raw
    priority, entry = text.split(" ", 1)
    return Priority(priority), QueueEntry.decode(entry)


def restore(
    client: redis.Redis, team_id: str, entries: Sequence[tuple[Priority, QueueEntry]]
) -> None:
    """Put set-aside entries back at the head of their team's queues, in this order."""
    by_priority: dict[Priority, list[QueueEntry]] = {}
    for priority, entry in entries:
        by_priority.setdefault(priority, []).append(entry)
    for priority, group in by_priority.items():
        push_front(client, team_id, priority, group)


def _announce(pipe: redis.client.Pipeline, team_id: str) -> None:
    pipe.sadd(redis_keys.backlogged_teams(), team_id)
    pipe.lpush(redis_keys.scheduler_wake(), "submit")
    pipe.ltrim(redis_keys.scheduler_wake(), 0, 0)
