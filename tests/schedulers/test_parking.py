"""Parking requests behind open breakers and bringing them back, on a real Redis."""

from __future__ import annotations

from broker import redis_keys
from broker.queues import QueueEntry, decode_set_aside
from broker.states import Priority
from schedulers.parking import Parking


def entry(n: int, model: str = "gpt-4o-mini") -> QueueEntry:
    return QueueEntry(f"req_{n}", model, 40, 256, 1_700_000_000_000 + n, "search")


def park(redis_client, parking: Parking, items) -> None:
    with redis_client.pipeline(transaction=False) as pipe:
        parking.park(pipe, items)
        pipe.execute()


def queue(redis_client, team: str, priority: Priority) -> list[str]:
    return [
        QueueEntry.decode(raw).request_id
        for raw in redis_client.lrange(redis_keys.team_queue(team, priority), 0, -1)
    ]


def test_release_puts_back_only_what_can_go_in_order_ahead_of_the_queue(redis_client):
    parking = Parking(redis_client)
    redis_client.rpush(
        redis_keys.team_queue("content", Priority.MEDIUM), entry(9, "gpt-4o").encode()
    )
    park(
        redis_client,
        parking,
        [
            ("content", Priority.MEDIUM, entry(1)),
            ("content", Priority.HIGH, entry(2, "claude-haiku-4-5")),
            ("content", Priority.MEDIUM, entry(3)),
            ("product", Priority.LOW, entry(4, "claude-haiku-4-5")),
        ],
    )
    assert parking.release(lambda e: e.model == "gpt-4o-mini") == 2
    assert queue(redis_client, "content", Priority.MEDIUM) == ["req_1", "req_3", "req_9"]
    assert redis_client.sismember(redis_keys.backlogged_teams(), "content")
    still = [decode_set_aside(r) for r in redis_client.lrange(redis_keys.parked("content"), 0, -1)]
    assert still == [(Priority.HIGH, entry(2, "claude-haiku-4-5"))], "keeps its priority"
    assert redis_client.llen(redis_keys.parked("product")) == 1
    assert parking.release(lambda e: True) == 2
    assert queue(redis_client, "content", Priority.HIGH) == ["req_2"]
    assert queue(redis_client, "product", Priority.LOW) == ["req_4"]
    assert redis_client.smembers(redis_keys.parked_teams()) == set()
    assert redis_client.exists(redis_keys.parked("content"), redis_keys.parked("product")) == 0


def test_release_with_nothing_parked_does_nothing(redis_client):
    assert Parking(redis_client).release(lambda e: True) == 0
