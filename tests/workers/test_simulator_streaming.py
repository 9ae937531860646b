"""Streamed answers of the simulated provider, read by the official SDKs and as raw events.

A streamed answer is the non-streamed one cut into pieces: the same text, stop reason, stop
sequence and usage. ``stream_chunk_ms`` spaces the pieces out, in both wire formats.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from broker.local.processes import start_simulator
from workers.simulator.settings import SimulatorSettings
from workers.simulator.wire import text_pieces

OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4o-mini", "claude-haiku-4-5"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}
PROMPT = [{"role": "user", "content": "Stream me, please."}]
ASK = {"model": ANTHROPIC_MODEL, "max_tokens": 1000, "messages": PROMPT}
PAUSE_MS = 50
PACED_TOKENS = 24  # six pieces of four words: five pauses


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    child, url = start_simulator({"BROKER_SIM_SEED": "7"}, tmp_path_factory.mktemp("sim"))
    yield url
    child.stop()


@pytest.fixture
def url(server: str) -> Iterator[str]:
    """The shared server, unpaced again after the test."""
    yield server
    configure(server, stream_chunk_ms=0)


def configure(url: str, **knobs) -> dict:
    response = http().post(f"{url}/_sim/config", json=knobs)
    response.raise_for_status()
    return response.json()


@functools.cache
def http() -> httpx.Client:
    return httpx.Client(timeout=10)


@functools.cache
def oai(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="sk-test", max_retries=0)


@functools.cache
def ant(url: str) -> anthropic.Anthropic:
    """A client that validates every event against the SDK's types, as its own tests do."""
    return anthropic.Anthropic(
        base_url=url, api_key="sk-ant-test", max_retries=0, _strict_response_validation=True
    )


def sse_frames(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The server-sent events of ``response``, each as its fields (``event``, ``data``)."""
    frame: dict[str, str] = {}
    for line in response.iter_lines():
        if line:
            field, _, value = line.partition(": ")
            frame[field] = value
        elif frame:
            yield frame
            frame = {}
    assert not frame, "the last event is not ended by a blank line"


def stop_kwargs(url: str, case: str) -> dict:
    """Request fields that make the answer end with ``case`` as its stop reason."""
    if case == "max_tokens":
        return {"max_tokens": 6}
    if case == "stop_sequence":
        full = ant(url).messages.create(**ASK).content[0].text
        return {"stop_sequences": [full.split()[9]]}
    return {}


# --- 1. Anthropic: the SDK's stream and the raw events -----------------------------------------


@pytest.mark.parametrize("case", ["end_turn", "max_tokens", "stop_sequence"])
def test_anthropic_sdk_stream_matches_the_non_streamed_answer(url, case):
    ask = {**ASK, **stop_kwargs(url, case)}
    whole = ant(url).messages.create(**ask)
    with ant(url).messages.stream(**ask) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and text == final.content[0].text == whole.content[0].text
    assert final.stop_reason == whole.stop_reason == case
    assert final.stop_sequence == whole.stop_sequence
    assert final.usage.output_tokens == whole.usage.output_tokens
    assert final.usage.input_tokens == whole.usage.input_tokens
    assert final.id.startswith("msg_") and final.model == ANTHROPIC_MODEL


def test_anthropic_raw_events_follow_the_api_sequence(url):
    whole = http().post(f"{url}/v1/messages", headers=ANTHROPIC_HEADERS, json=ASK).json()
    body = {**ASK, "stream": True}
    with http().stream(
        "POST", f"{url}/v1/messages", headers=ANTHROPIC_HEADERS, json=body
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["request-id"].startswith("req_")
        assert "anthropic-ratelimit-requests-remaining" in response.headers
        frames = list(sse_frames(response))
    names = [frame["event"] for frame in frames]
    data = [json.loads(frame["data"]) for frame in frames]
    assert [d["type"] for d in data] == names
    deltas = names.count("content_block_delta")
    assert deltas >= 4  # 16 words at least, four to a piece
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = data[0]["message"]
    assert start["id"].startswith("msg_") and start["id"] != whole["id"]
    assert {k: v for k, v in start.items() if k != "id"} == {
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": ANTHROPIC_MODEL,
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {**whole["usage"], "output_tokens": 1},
    }
    assert data[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert data[2] == {"type": "ping"}
    pieces = [d["delta"]["text"] for d in data[3:-3]]
    assert all(d["index"] == 0 and d["delta"]["type"] == "text_delta" for d in data[3:-3])
    assert all(1 <= len(piece.split()) <= 4 for piece in pieces)
    assert "".join(pieces) == whole["content"][0]["text"]
    assert data[-3:] == [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": whole["usage"]["output_tokens"]},
        },
        {"type": "message_stop"},
    ]


def test_anthropic_stream_type_is_still_checked(url):
    response = http().post(
        f"{url}/v1/messages", headers=ANTHROPIC_HEADERS, json={**ASK, "stream": "yes"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "stream: Input should be a valid boolean"


# --- 2. pacing ---------------------------------------------------------------------------------


def piece_arrivals(url: str, wire: str) -> list[float]:
    """When each content piece of a streamed answer reached the SDK (monotonic seconds)."""
    if wire == "anthropic":
        with ant(url).messages.stream(**{**ASK, "max_tokens": PACED_TOKENS}) as stream:
            return [time.monotonic() for _ in stream.text_stream]
    chunks = oai(url).chat.completions.create(
        model=OPENAI_MODEL, messages=PROMPT, max_tokens=PACED_TOKENS, stream=True
    )
    return [time.monotonic() for c in chunks if c.choices and c.choices[0].delta.content]


@pytest.mark.parametrize("wire", ["anthropic", "openai"])
def test_stream_chunk_ms_pauses_between_pieces(url, wire):
    assert configure(url, stream_chunk_ms=PAUSE_MS)["stream_chunk_ms"] == PAUSE_MS
    pause = PAUSE_MS / 1000
    started = time.monotonic()
    arrivals = piece_arrivals(url, wire)
    assert len(arrivals) == PACED_TOKENS // 4
    assert arrivals[-1] - started >= (len(arrivals) - 1) * pause  # the server slept this much
    assert arrivals[-1] - arrivals[0] >= (len(arrivals) - 3) * pause  # and not all up front


def test_stream_chunk_ms_is_a_checked_knob(url, monkeypatch):
    assert http().get(f"{url}/_sim/config").json()["stream_chunk_ms"] == 0
    assert http().post(f"{url}/_sim/config", json={"stream_chunk_ms": -1}).status_code == 422
    monkeypatch.setenv("BROKER_SIM_STREAM_CHUNK_MS", "25")
    assert SimulatorSettings().stream_chunk_ms == 25


@pytest.mark.parametrize("text", ["", "one", "Two words.", "a  b\nc d e f g h i j k", " x "])
def test_text_pieces_join_back_exactly(text):
    pieces = text_pieces(text)
    assert "".join(pieces) == text
    assert all(len(piece.split(" ")) <= 5 for piece in pieces)
