"""A streamed request's deltas through a private Redis: the worker's writer, the API's reader,
and the live answer an SDK stream is written from (the row lookup is a stand-in)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from broker import redis_keys
from broker.deltas import TTL_S, Delta, DeltaReader, DeltaWriter
from broker.dropin.live import BROKEN, Live
from broker.dropin.streams import anthropic_of, openai_of

RID = "req_0123_0"


def row(output: str, status: str = "succeeded", error: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        id=RID, status=status, output=output, error=error, finish_reason="stop",
        input_tokens=5, cached_input_tokens=0, output_tokens=3, model="m", model_used="m",
    )  # fmt: skip


def read_all(url: str, ended_row, write=None) -> list[dict]:
    """The OpenAI-format events of the live answer, as JSON (``[DONE]`` as a string)."""

    async def scenario() -> list[bytes]:
        client = aioredis.Redis.from_url(url)
        reader = DeltaReader(client, RID)
        first = await reader.read(1000)
        looks = iter(ended_row)

        async def ended():
            return next(looks, ended_row[-1] if ended_row else None)

        live = Live(RID, reader, first, ended, block_ms=20)
        events = [e async for e in live.events(openai_of(False))]
        await client.aclose()
        return events

    return [
        json.loads(data) if data != "[DONE]" else data
        for event in asyncio.run(scenario())
        for data in [event.decode().removeprefix("data: ").strip()]
    ]


def texts(events: list) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content", "")
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def test_the_reader_gets_each_try_in_order_and_the_end_mark(
    redis_client: redis.Redis, redis_server
):
    writer = DeltaWriter(redis_client, RID, attempt=1, model="m")
    sink = writer.call()
    sink("Hello")
    sink(" world")
    writer.call()("Hi")
    writer.end()
    assert 0 < redis_client.ttl(redis_keys.deltas(RID)) <= TTL_S

    async def scenario():
        client = aioredis.Redis.from_url(redis_server.url)
        found = await DeltaReader(client, RID).read(100)
        await client.aclose()
        return found

    found = asyncio.run(scenario())
    assert [(d.try_id, d.text, d.model, d.ended) for d in found] == [
        ("1.1", "Hello", "m", False),
        ("1.1", " world", "m", False),
        ("1.2", "Hi", "m", False),
        ("", "", "", True),
    ]


def test_a_live_answer_forwards_the_deltas_then_the_tail(redis_client, redis_server):
    writer = DeltaWriter(redis_client, RID, attempt=1, model="m")
    sink = writer.call()
    sink("Hello")
    sink(" world")
    writer.end()
    events = read_all(redis_server.url, [row("Hello world")])
    assert texts(events) == "Hello world"
    assert events[-2]["choices"][0]["finish_reason"] == "stop" and events[-1] == "[DONE]"
    assert not redis_client.exists(redis_keys.deltas(RID))  # read once, then gone


def test_what_the_deltas_missed_is_sent_from_the_row(redis_client, redis_server):
    DeltaWriter(redis_client, RID, attempt=1, model="m").call()("Hello")  # then Redis was lost
    events = read_all(redis_server.url, [None, row("Hello world")])
    assert texts(events) == "Hello world" and events[-1] == "[DONE]"


def test_a_try_that_failed_part_way_ends_the_stream_with_an_error(redis_client, redis_server):
    writer = DeltaWriter(redis_client, RID, attempt=1, model="m")
    writer.call()("Hel")
    writer.call()("Good")  # the retry writes another answer
    writer.call()("bye")
    writer.end()
    events = read_all(redis_server.url, [row("Goodbye")])
    assert texts(events) == "Hel"
    assert events[-1] == {"error": {"message": BROKEN, "type": "server_error", "code": None}}


def test_a_request_that_failed_after_its_first_words_ends_with_its_error(
    redis_client, redis_server
):
    writer = DeltaWriter(redis_client, RID, attempt=1, model="m")
    writer.call()("Hel")
    writer.end()
    events = read_all(redis_server.url, [row("", "failed", "provider_error: boom")])
    assert events[-1]["error"]["message"] == "provider_error: boom"


def test_a_writer_without_redis_lets_the_call_go_on(redis_server):
    dead = redis.Redis(port=1, retry=Retry(NoBackoff(), 0))
    writer = DeltaWriter(dead, RID, attempt=1, model="m")
    sink = writer.call()
    sink("Hello")  # logged once, then no more tries
    sink(" world")
    writer.end()


def test_a_reader_without_redis_reads_nothing_and_the_answer_comes_from_the_row():
    async def scenario() -> list[bytes]:
        dead = aioredis.Redis(port=1, retry=AsyncRetry(NoBackoff(), 0))
        reader = DeltaReader(dead, RID)
        assert await reader.read(10) == []
        first = [Delta("1.1", "Hel", "m")]  # read before Redis went away
        rows = iter([None, row("Hello")])

        async def ended():
            return next(rows, row("Hello"))

        live = Live(RID, reader, first, ended, block_ms=10)
        return [e async for e in live.events(openai_of(False))]

    events = [e.decode().removeprefix("data: ").strip() for e in asyncio.run(scenario())]
    text = "".join(
        json.loads(e)["choices"][0]["delta"].get("content", "")
        for e in events
        if e != "[DONE]" and json.loads(e).get("choices")
    )
    assert text == "Hello" and events[-1] == "[DONE]"


def test_input_tokens_reported_before_the_text_start_an_anthropic_live_answer(
    redis_client, redis_server
):
    """Anthropic's SDKs before 0.50 take the input tokens from ``message_start`` only."""
    writer = DeltaWriter(redis_client, RID, attempt=1, model="m")
    sink = writer.call()
    sink.started((25, 7))
    sink("Hello")
    sink(" world")
    writer.end()

    async def scenario() -> tuple[list[Delta], list[bytes]]:
        client = aioredis.Redis.from_url(redis_server.url)
        first = await DeltaReader(client, RID).read(1000)
        reader = DeltaReader(client, RID)
        live = Live(RID, reader, await reader.read(1000), _ended_at_once, block_ms=20)
        events = [e async for e in live.events(anthropic_of)]
        await client.aclose()
        return first, events

    first, events = asyncio.run(scenario())
    assert [d.input_tokens for d in first] == [(25, 7), None, None]
    start = json.loads(events[0].decode().split("data: ")[1].split("\n")[0])
    usage = start["message"]["usage"]
    assert (usage["input_tokens"], usage["cache_read_input_tokens"]) == (25, 7)


async def _ended_at_once():
    return row("Hello world")
