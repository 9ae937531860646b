"""Single-flight bookkeeping on a real Redis: waiters land with the answer, go back to their
queues when the flight fails or is lost, and are counted as present meanwhile."""

from __future__ import annotations

from broker import redis_keys
from broker.cache.flights import Flights
from broker.queues import QueueEntry
from broker.states import Priority

KEY = "k" * 64


def entry(rid: str) -> QueueEntry:
    return QueueEntry(rid, "gpt-4o-mini", 40, 16, 1_000, "chatbot", "-", 0, f"{KEY}/60/rw")


def start(flights: Flights, client, leader: str, waiters: list[tuple[str, str]]) -> None:
    with client.pipeline(transaction=False) as pipe:
        flights.start(pipe, [(KEY, leader)])
        flights.wait(pipe, [(KEY, (team, Priority.HIGH, entry(rid))) for team, rid in waiters])
        pipe.execute()


def test_landing_takes_the_waiters_and_ends_the_flight(redis_client):
    flights = Flights(redis_client, ttl_s=60)
    start(flights, redis_client, "req_a_0", [("product", "req_a_1"), ("content", "req_b_0")])
    assert flights.up([KEY]) == {KEY}
    assert flights.waiting() == {"product": {"req_a_1"}, "content": {"req_b_0"}}
    landed = flights.land(KEY)
    assert [(team, e.request_id) for team, _, e in landed] == [
        ("product", "req_a_1"),
        ("content", "req_b_0"),
    ]
    assert flights.up([KEY]) == set() and flights.waiting() == {}


def test_a_failed_flight_puts_the_waiters_back_at_the_head_of_their_queues(redis_client):
    flights = Flights(redis_client, ttl_s=60)
    start(flights, redis_client, "req_a_0", [("product", "req_a_1"), ("product", "req_a_2")])
    assert flights.release(KEY, leader="someone_else") == 0  # not its flight: left alone
    assert flights.release(KEY, leader="req_a_0") == 2
    queued = redis_client.lrange(redis_keys.team_queue("product", Priority.HIGH), 0, -1)
    assert [QueueEntry.decode(raw).request_id for raw in queued] == ["req_a_1", "req_a_2"]
    assert QueueEntry.decode(queued[0]).cache_key == KEY  # the cache token survives


def test_the_sweep_frees_the_waiters_of_a_lost_flight(redis_client):
    flights = Flights(redis_client, ttl_s=60)
    start(flights, redis_client, "req_a_0", [("product", "req_a_1")])
    assert flights.sweep() == 0  # the flight is up: they keep waiting
    redis_client.delete(redis_keys.flight(KEY))  # its worker died and the TTL ran out
    assert flights.sweep() == 1
    assert redis_client.llen(redis_keys.team_queue("product", Priority.HIGH)) == 1


def test_a_request_never_waits_for_its_own_flight():
    """A leader that died after starting a flight but before sending its task leaves the
    flight up and the request at its queue's head: the next leader must send it again, not
    park it behind itself until the flight's TTL runs out."""
    from schedulers.caching import Known

    known = Known(flying={KEY: "req_a_0"})
    assert known.decide("product", Priority.HIGH, entry("req_a_0")) == "go"
    assert known.decide("product", Priority.HIGH, entry("req_a_1")) == "wait"


def test_a_flight_that_lands_while_the_round_looks_is_a_hit_not_a_second_call(
    redis_client, settings, db, monkeypatch
):
    """The round reads flights and answers in two round trips; a worker's landing (answer kept
    and flight ended in one transaction) may fall between them. Whichever read comes first,
    the repeat must be answered or wait, never called again."""
    from broker.cache.exact import CachedAnswer, ExactCache, put_on
    from schedulers.caching import CacheCheck

    flights = Flights(redis_client, ttl_s=60)
    start(flights, redis_client, "req_a_0", [])
    answer = CachedAnswer(
        KEY, "req_a_0", "gpt-4o-mini", "sim-openai", "hi", "stop", 5, 0, 1, 9, 0.0
    )
    landed = []

    def land_after(read):
        def first_read_then_land(self, keys):
            found = read(self, keys)
            if not landed:  # the worker lands between the round's two reads
                landed.append(True)
                with redis_client.pipeline(transaction=True) as pipe:
                    flights.land_on(pipe, KEY)
                    put_on(pipe, answer, 60, "product", "chatbot")
                    pipe.execute()
            return found

        return first_read_then_land

    monkeypatch.setattr(Flights, "leaders", land_after(Flights.leaders))
    monkeypatch.setattr(ExactCache, "get_many", land_after(ExactCache.get_many))
    known = CacheCheck(redis_client, db, settings.config).look([entry("req_a_1")])
    assert landed
    assert known.decide("product", Priority.HIGH, entry("req_a_1")) == "hit"
