"""The official OpenAI and Anthropic SDKs, unchanged and strictly validating, against a real
stack: chat completions and messages, synchronous and streamed, through the queues; the newest
versions in the venv, and the oldest we support (openai 1.55.3, the first that works with
httpx 0.28; anthropic 0.41.0, the first with ``messages.batches``) installed from PyPI into a
private directory for one subprocess (without a network that test skips and says so)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from sqlalchemy import select

from broker.local.stack import Stack
from broker.store import Database, Request

pytestmark = pytest.mark.e2e

PRODUCT, CONTENT = "ib-dev-product", "ib-dev-content"
OLDEST = ("openai==1.55.3", "anthropic==0.41.0", "distro")  # distro: old openai imports it
CALLS = Path(__file__).with_name("sdk_calls.py")
EMBED = "text-embedding-3-small"


def oa(stack: Stack, key: str = PRODUCT, **kw) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.api_url}/v1",
        api_key=key,
        max_retries=0,
        _strict_response_validation=True,
        **kw,
    )


def an(stack: Stack, key: str = PRODUCT, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.api_url, api_key=key, max_retries=0, _strict_response_validation=True, **kw
    )


def unique(text: str) -> str:
    return f"{text} ({uuid.uuid4().hex[:8]})"


def test_chat_completion_goes_through_the_queues_and_is_recorded(stack: Stack):
    with oa(stack, default_headers={"x-broker-feature": "chatbot"}) as client:
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "Answer briefly."},
                {"role": "user", "content": unique("What is a queue?")},
            ],
            max_tokens=40,
        )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    request_id = raw.headers["x-request-id"]
    with Database(stack.settings.database_url_or_default).session() as session:
        row = session.get(Request, request_id)
        assert (row.team_id, row.feature, row.priority) == ("product", "chatbot", "high")
        assert row.status == "succeeded" and row.cost_micros > 0
        assert row.output == completion.choices[0].message.content


def test_streamed_chat_completion_carries_the_same_answer_and_usage(stack: Stack):
    prompt = unique("Name three rivers.")
    with oa(stack) as client:
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": prompt}],
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = list(stream)
        again = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": prompt}], max_tokens=40
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    assert text == again.choices[0].message.content  # the repeat is a cache hit: same answer
    assert again.model_extra["x_broker"]["cache"] == "exact"


def test_anthropic_message_sync_and_streamed(stack: Stack):
    with an(stack, default_headers={"x-broker-feature": "summarization"}) as client:
        message = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=40,
            system="Be brief.",
            messages=[{"role": "user", "content": unique("Summarise: the cat sat.")}],
        )
        assert message.type == "message" and message.content[0].text
        assert message.stop_reason in ("end_turn", "max_tokens")
        with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=40,
            messages=[{"role": "user", "content": unique("Say hello.")}],
        ) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
    assert streamed == final.content[0].text and streamed
    assert final.usage.output_tokens > 0


def test_sdk_errors_keep_their_classes(stack: Stack):
    with oa(stack, key="not-a-key") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
    with an(stack, key="not-a-key") as client, pytest.raises(anthropic.AuthenticationError):
        client.messages.create(
            model="claude-haiku-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    with oa(stack) as client, pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], logprobs=True
        )
    assert "logprobs" in refused.value.message
    with an(stack) as client, pytest.raises(anthropic.BadRequestError) as unknown:
        client.messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "hi"}]
        )
    assert "claude-haiku-4-5" in unknown.value.message  # the known models are listed


def test_openai_stop_seed_top_p_and_json_formats_reach_the_provider(stack: Stack):
    ask = [{"role": "user", "content": unique("Describe a river in JSON.")}]
    with oa(stack) as client:
        full = client.chat.completions.create(model="gpt-4o-mini", messages=ask, max_tokens=40)
        cut = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask, max_tokens=40, stop=["."]
        )
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=ask, max_tokens=40, seed=7, top_p=0.5
        )
        seeded = raw.parse()
        as_json = client.chat.completions.create(
            model="gpt-4o-mini", messages=ask, response_format={"type": "json_object"}
        )
        with pytest.raises(openai.BadRequestError) as no_top_k:
            client.chat.completions.create(
                model="gpt-4o-mini", messages=ask, extra_body={"top_k": 5}
            )
        with pytest.raises(openai.BadRequestError) as no_json_object:
            client.chat.completions.create(
                model="claude-haiku-4-5", messages=ask, response_format={"type": "json_object"}
            )
    text = full.choices[0].message.content
    assert "." in text  # the simulated answer's sentences end in one
    assert cut.choices[0].message.content == text[: text.find(".")].rstrip()
    assert cut.choices[0].finish_reason == "stop"
    assert cut.model_extra["x_broker"]["cache"] is None  # another question: not the cached one
    assert seeded.choices[0].message.content and seeded.model_extra["x_broker"]["cache"] is None
    assert isinstance(json.loads(as_json.choices[0].message.content), dict)
    assert as_json.choices[0].finish_reason == "stop"
    assert no_top_k.value.param == "top_k"  # one request: no requests[0] in the name
    assert no_top_k.value.body["message"].startswith("top_k cannot go to model 'gpt-4o-mini'")
    assert "json_object cannot be honoured" in no_json_object.value.message
    with Database(stack.settings.database_url_or_default).session() as session:
        payload = session.get(Request, raw.headers["x-request-id"]).payload
    assert (payload["seed"], payload["top_p"]) == (7, 0.5)


def test_anthropic_stop_sequences_and_top_k_sync_and_streamed(stack: Stack):
    ask = [{"role": "user", "content": unique("Tell me about rivers.")}]
    with an(stack) as client:
        full = client.messages.create(model="claude-haiku-4-5", max_tokens=40, messages=ask)
        # the newest SDK no longer lists top_k (the API still takes it): sent as an extra
        cut = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=40,
            messages=ask,
            stop_sequences=["."],
            extra_body={"top_k": 5},
        )
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=40, messages=ask, stop_sequences=["."]
        ) as stream:
            streamed = "".join(stream.text_stream)
            final = stream.get_final_message()
        # With several, the one the provider stopped at is recorded (never a guess).
        several = ["never-in-the-answer", "."]
        named = client.messages.create(
            model="claude-haiku-4-5", max_tokens=40, messages=ask, stop_sequences=several
        )
        with client.messages.stream(
            model="claude-haiku-4-5", max_tokens=40, messages=ask, stop_sequences=several
        ) as stream:
            replayed = stream.get_final_message()  # the same request again: the cache's
    assert (named.stop_reason, named.stop_sequence) == ("stop_sequence", ".")
    assert (replayed.stop_reason, replayed.stop_sequence) == ("stop_sequence", ".")
    text = full.content[0].text
    assert full.stop_sequence is None
    assert cut.content[0].text == text[: text.find(".")].rstrip()
    assert (cut.stop_reason, cut.stop_sequence) == ("stop_sequence", ".")
    assert streamed == cut.content[0].text
    assert (final.stop_reason, final.stop_sequence) == ("stop_sequence", ".")


def test_embeddings_go_through_the_queues_as_floats_and_as_the_sdks_default_base64(stack: Stack):
    texts = [unique("What is a queue?"), unique("What is a broker?")]
    with oa(stack, default_headers={"x-broker-feature": "search"}) as client:
        raw = client.embeddings.with_raw_response.create(
            model=EMBED, input=texts, dimensions=64, encoding_format="float"
        )
        floats = raw.parse()
        with pytest.raises(openai.BadRequestError, match=f"embedding models: {EMBED}"):
            client.embeddings.create(model="gpt-4o-mini", input="x", encoding_format="float")
        with pytest.raises(openai.BadRequestError, match="not chat ones"):
            client.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "x"}])
    assert floats.object == "list" and floats.model == EMBED
    assert [d.index for d in floats.data] == [0, 1]
    assert [len(d.embedding) for d in floats.data] == [64, 64]
    assert floats.usage.prompt_tokens == floats.usage.total_tokens > 0
    # The SDK's default asks for base64 and decodes it after validating: its strict mode refuses
    # the string against its own List[float] type (against OpenAI too), so this client is not.
    loose = openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=PRODUCT, max_retries=0)
    with loose:
        decoded = loose.embeddings.create(model=EMBED, input=texts, dimensions=64)
    for got, want in zip(decoded.data, floats.data, strict=True):
        assert max(abs(a - b) for a, b in zip(got.embedding, want.embedding, strict=True)) < 1e-6
    with Database(stack.settings.database_url_or_default).session() as session:
        row = session.get(Request, raw.headers["x-request-id"])
        assert (row.team_id, row.feature, row.priority) == ("product", "search", "high")
        assert row.status == "succeeded" and row.model_used == EMBED
        assert row.output_tokens == 0 and row.input_tokens == floats.usage.prompt_tokens
        assert row.payload["input"] == texts


def test_models_lists_the_catalog_and_the_routes(stack: Stack):
    with oa(stack) as client:
        names = {m.id for m in client.models.list()}
        assert {"gpt-4o-mini", "claude-haiku-4-5", "auto"} <= names
        assert client.models.retrieve("auto").owned_by == "inference-broker"


@pytest.fixture(scope="session")
def oldest_sdks(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("oldest-sdks")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
        + ["--disable-pip-version-check", *OLDEST],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if install.returncode != 0:
        pytest.skip(f"could not install {', '.join(OLDEST)} from PyPI: {install.stderr[-300:]}")
    return target


def test_oldest_supported_sdks_work_unchanged(stack: Stack, oldest_sdks: Path):
    env = {**os.environ, "PYTHONPATH": str(oldest_sdks)}
    run = subprocess.run(
        [sys.executable, str(CALLS), stack.api_url, "ib-dev-platform"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "ok openai 1.55.3 anthropic 0.41.0" in run.stdout


def test_a_caller_that_goes_away_cancels_its_queued_request(stack: Stack):
    admin = {"authorization": "Bearer ib-dev-admin"}
    pause = httpx.post(
        f"{stack.api_url}/v1/admin/teams/content/pause", json={"reason": "test"}, headers=admin
    )
    assert pause.status_code == 200, pause.text
    time.sleep(2.5)  # the scheduler rereads pauses every 2 s
    try:
        with oa(stack, key=CONTENT, timeout=1.5) as client, pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(
                model="gpt-4o-mini",
                messages=[{"role": "user", "content": unique("Never mind.")}],
                extra_headers={"x-broker-feature": "gone-away"},
            )
        db = Database(stack.settings.database_url_or_default)

        def status() -> str | None:
            with db.session() as session:
                row = session.scalars(
                    select(Request).where(Request.feature == "gone-away")
                ).one_or_none()
                return row.status if row is not None else None

        deadline = time.monotonic() + 10
        while status() != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert status() == "cancelled"  # noticed within a poll of the disconnect
    finally:
        httpx.post(f"{stack.api_url}/v1/admin/teams/content/resume", headers=admin)


@pytest.fixture
def slow_stream(stack: Stack) -> Iterator[None]:
    """The simulator pauses between the chunks it streams, as a model writing does."""
    sim = f"{stack.env['BROKER_SIMULATOR_URL']}/_sim/config"
    httpx.post(sim, json={"stream_chunk_ms": 150}).raise_for_status()
    try:
        yield
    finally:
        httpx.post(sim, json={"stream_chunk_ms": 0}).raise_for_status()


def status_of(stack: Stack, request_id: str) -> str:
    with Database(stack.settings.database_url_or_default).session() as session:
        return session.get(Request, request_id).status


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])  # either wire format
def test_a_streamed_chat_completion_arrives_as_the_provider_writes_it(
    stack: Stack, slow_stream, model: str
):
    prompt = unique("Describe a long river in detail.")
    with (
        oa(stack) as client,
        client.chat.completions.with_streaming_response.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            max_tokens=60,
            stream=True,
            stream_options={"include_usage": True},
        ) as response,
    ):
        request_id = response.headers["x-request-id"]
        chunks = iter(response.parse())
        head, first = next(chunks), next(chunks)
        # The first words are here while the provider is still writing the rest.
        assert status_of(stack, request_id) == "running"
        rest = list(chunks)
    assert head.choices[0].delta.role == "assistant" and first.choices[0].delta.content
    text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
    with Database(stack.settings.database_url_or_default).session() as session:
        row = session.get(Request, request_id)
        assert (row.status, row.streamed, row.output) == ("succeeded", True, text)
    assert rest[-1].usage.completion_tokens == row.output_tokens
    assert rest[-1].usage.prompt_tokens == row.input_tokens


def test_a_streamed_message_arrives_as_the_provider_writes_it(stack: Stack, slow_stream):
    with (
        an(stack) as client,
        client.messages.with_streaming_response.create(
            model="claude-haiku-4-5",
            max_tokens=60,
            messages=[{"role": "user", "content": unique("Describe a mountain in detail.")}],
            stream=True,
        ) as response,
    ):
        request_id = response.headers["request-id"]
        events = iter(response.parse())
        kinds = [next(events).type for _ in range(3)]  # the SDK does not show the ping
        assert status_of(stack, request_id) == "running"
        rest = list(events)
    assert kinds == ["message_start", "content_block_start", "content_block_delta"]
    assert [e.type for e in rest[-3:]] == ["content_block_stop", "message_delta", "message_stop"]
    with Database(stack.settings.database_url_or_default).session() as session:
        row = session.get(Request, request_id)
    assert rest[-2].usage.output_tokens == row.output_tokens and row.streamed
    # The repeat is the cache's: whole at once, and the SDK's accumulator reads the same text.
    ask = row.payload["messages"]
    with (
        an(stack) as client,
        client.messages.stream(model="claude-haiku-4-5", max_tokens=60, messages=ask) as stream,
    ):
        assert "".join(stream.text_stream) == row.output
        hit = stream.response.headers["request-id"]
    with Database(stack.settings.database_url_or_default).session() as session:
        assert session.get(Request, hit).cache_hit == "exact"
