"""The simulated provider, run as a real process and spoken to by the official SDKs.

If the official ``openai`` and ``anthropic`` clients accept our bodies, errors and headers, then
the broker's adapters are tested against something the real APIs' own clients cannot tell apart.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from broker.local.processes import start_simulator

OPENAI_MODEL, ANTHROPIC_MODEL = "gpt-4o-mini", "claude-haiku-4-5"
DEFAULTS = {
    "latency_ms": 0,
    "latency_sigma": 0.5,
    "error_rate": 0,
    "rpm": None,
    "tpm": None,
    "quota_exhausted": False,
    "outages": [],
    "malformed_rate": 0,
    "api_key": None,
    "replay_path": None,
    "replay_strong_models": [],
}
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


_start = start_simulator


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    child, url = _start({"BROKER_SIM_SEED": "7"}, tmp_path_factory.mktemp("sim"))
    yield url
    child.stop()


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory) -> Iterator[str]:
    """Knobs from the environment: 2 requests per minute and a required API key."""
    env = {"BROKER_SIM_RPM": "2", "BROKER_SIM_API_KEY": "sk-right"}
    child, url = _start(env, tmp_path_factory.mktemp("sim"))
    yield url
    child.stop()


@pytest.fixture
def url(server: str) -> Iterator[str]:
    """The shared server, with every runtime knob restored after the test."""
    yield server
    http().post(f"{server}/_sim/config", json=DEFAULTS).raise_for_status()


def configure(url: str, **knobs) -> dict:
    response = http().post(f"{url}/_sim/config", json=knobs)
    response.raise_for_status()
    return response.json()


# Clients are cached: building one costs tens of milliseconds (TLS context), calls cost ~2 ms.
@functools.cache
def http() -> httpx.Client:
    return httpx.Client(timeout=10)


@functools.cache
def oai(url: str, key: str = "sk-test") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@functools.cache
def ant(url: str, key: str = "sk-ant-test") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key=key, max_retries=0)


def chat(client: openai.OpenAI, text: str = "Say something.", **kw):
    return client.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": text}], **kw
    )


def message(
    client: anthropic.Anthropic, text: str = "Say something.", max_tokens: int = 1000, **kw
):
    return client.messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=max_tokens,
        messages=[{"role": "user", "content": text}],
        **kw,
    )


# --- 1. the official SDKs accept the responses -------------------------------------------------


def test_openai_sdk_parses_completion_and_headers(url):
    raw = oai(url).chat.completions.with_raw_response.create(
        model=OPENAI_MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        max_tokens=1000,
    )
    completion = raw.parse()
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["x-request-id"].startswith("req_")
    assert completion._request_id == raw.headers["x-request-id"]
    for name in (
        "limit-requests",
        "limit-tokens",
        "remaining-requests",
        "remaining-tokens",
        "reset-requests",
        "reset-tokens",
    ):
        assert f"x-ratelimit-{name}" in raw.headers
    assert raw.headers["x-ratelimit-reset-requests"].endswith("s")
    assert completion.id.startswith("chatcmpl-") and completion.object == "chat.completion"
    assert completion.model == OPENAI_MODEL and completion.created > 1_700_000_000
    assert completion.system_fingerprint.startswith("fp_")
    assert completion.service_tier == "default"
    choice = completion.choices[0]
    assert choice.index == 0 and choice.logprobs is None
    assert choice.message.role == "assistant" and choice.message.refusal is None
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == len(choice.message.content.split()) >= 16
    assert usage.prompt_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details.reasoning_tokens == 0

    capped = oai(url).chat.completions.create(
        model=OPENAI_MODEL,
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hello there"},
        ],
        max_completion_tokens=5,
    )
    assert capped.choices[0].finish_reason == "length"
    assert capped.usage.completion_tokens == 5
    assert choice.message.content.startswith(capped.choices[0].message.content)


def test_anthropic_sdk_parses_message_and_headers(url):
    raw = ant(url).messages.with_raw_response.create(
        model=ANTHROPIC_MODEL,
        max_tokens=1000,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    msg = raw.parse()
    assert isinstance(msg, anthropic.types.Message)
    assert raw.headers["content-type"] == "application/json"
    assert raw.headers["request-id"].startswith("req_")
    assert msg._request_id == raw.headers["request-id"]
    for kind in ("requests", "tokens"):
        for name in ("limit", "remaining"):
            assert int(raw.headers[f"anthropic-ratelimit-{kind}-{name}"]) > 0
        assert raw.headers[f"anthropic-ratelimit-{kind}-reset"].endswith("Z")
    assert msg.id.startswith("msg_") and msg.type == "message" and msg.role == "assistant"
    assert msg.model == ANTHROPIC_MODEL
    assert isinstance(msg.content[0], anthropic.types.TextBlock)
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.output_tokens == len(msg.content[0].text.split()) >= 16
    assert msg.usage.input_tokens > 0
    assert msg.usage.cache_creation_input_tokens == 0 and msg.usage.cache_read_input_tokens == 0

    capped = ant(url).messages.create(
        model=ANTHROPIC_MODEL,
        max_tokens=5,
        system="Be brief.",
        messages=[{"role": "user", "content": "Hello there"}],
    )
    assert capped.stop_reason == "max_tokens" and capped.usage.output_tokens == 5
    assert msg.content[0].text.startswith(capped.content[0].text)


def test_openai_stream_matches_the_non_streamed_answer(url):
    whole = chat(oai(url), "Stream me")
    chunks = list(chat(oai(url), "Stream me", stream=True, stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens


def test_stop_sequence_cuts_the_text(url):
    full = message(ant(url), "Cut me").content[0].text
    word = full.split()[3]
    cut = message(ant(url), "Cut me", stop_sequences=[word])
    assert cut.stop_reason == "stop_sequence" and cut.stop_sequence == word
    assert cut.content[0].text == full[: full.find(word)].rstrip()
    assert cut.usage.output_tokens == len(cut.content[0].text.split())


def test_openai_stop_cuts_the_text_with_finish_reason_stop(url):
    full = chat(oai(url), "Cut me").choices[0].message.content
    word = full.split()[3]
    cut = chat(oai(url), "Cut me", stop=["never-there", word])
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == full[: full.find(word)].rstrip()
    assert cut.usage.completion_tokens == len(cut.choices[0].message.content.split())
    assert chat(oai(url), "Cut me", stop=word).choices[0].message.content == (
        cut.choices[0].message.content
    )
    with pytest.raises(openai.BadRequestError) as caught:
        chat(oai(url), "Cut me", stop=["a", "b", "c", "d", "e"])
    assert caught.value.param == "stop" and caught.value.code == "array_above_max_length"


def test_openai_json_formats_answer_with_json(url):
    plain = chat(oai(url), "Describe a river as JSON.").choices[0].message.content
    as_object = chat(oai(url), "Describe a river as JSON.", response_format={"type": "json_object"})
    assert isinstance(json.loads(as_object.choices[0].message.content), dict)
    with pytest.raises(json.JSONDecodeError):
        json.loads(plain)  # unchanged without a format
    with pytest.raises(openai.BadRequestError, match="must contain the word 'json'"):
        chat(oai(url), "Describe a river.", response_format={"type": "json_object"})

    from pydantic import BaseModel

    class River(BaseModel):
        name: str
        length_km: int
        countries: list[str]
        navigable: bool

    parsed = oai(url).chat.completions.parse(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "Describe a river."}],
        response_format=River,
    )
    river = parsed.choices[0].message.parsed  # the SDK validated it against the schema
    assert isinstance(river, River) and river.name and river.countries
    with pytest.raises(openai.BadRequestError) as caught:
        chat(oai(url), response_format={"type": "json_schema"})
    assert caught.value.param == "response_format.json_schema"
    with pytest.raises(openai.BadRequestError) as caught:
        chat(oai(url), response_format={"type": "xml"})
    assert caught.value.param == "response_format.type"


def test_openai_seed_and_top_p(url):
    def text(**kw) -> str:
        return chat(oai(url), "Seeded", **kw).choices[0].message.content

    assert text(seed=1) == text(seed=1) != text(seed=2)
    assert text(top_p=0.3) == text()  # sampling is not simulated: the same answer
    with pytest.raises(openai.BadRequestError) as caught:
        chat(oai(url), top_p=1.5)
    assert caught.value.param == "top_p" and caught.value.code == "decimal_above_max_value"
    with pytest.raises(openai.BadRequestError) as caught:
        chat(oai(url), seed="one")
    assert caught.value.param == "seed"
    with pytest.raises(openai.BadRequestError, match="Unrecognized request argument.*top_k"):
        chat(oai(url), extra_body={"top_k": 5})


def test_anthropic_sampling_parameters_and_json_output(url):
    # The newest SDK no longer lists top_p and top_k; the API (2023-06-01) still takes them.
    plain = message(ant(url), "Sample me").content[0].text
    sampled = message(ant(url), "Sample me", extra_body={"top_p": 0.5, "top_k": 20})
    assert sampled.content[0].text == plain
    for bad, words in (
        ({"top_k": -1}, "top_k: Input should be greater than or equal to 0"),
        ({"top_p": 1.2}, "top_p: Input should be less than or equal to 1"),
        ({"seed": 3}, "seed: Extra inputs are not permitted"),
        ({"stop": ["x"]}, "stop: Extra inputs are not permitted"),
    ):
        with pytest.raises(anthropic.BadRequestError) as caught:
            message(ant(url), extra_body=bad)
        assert caught.value.body["error"]["message"] == words
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "length_km": {"type": "integer"}},
        "required": ["name", "length_km"],
        "additionalProperties": False,
    }
    shaped = message(
        ant(url), "A river", output_config={"format": {"type": "json_schema", "schema": schema}}
    )
    answer = json.loads(shaped.content[0].text)
    assert isinstance(answer["name"], str) and isinstance(answer["length_km"], int)
    assert shaped.stop_reason == "end_turn"


# --- 2. determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_same_body_same_answer_different_body_different_answer(url, path):
    body = {
        "model": OPENAI_MODEL,
        "max_tokens": 300,
        "messages": [{"role": "user", "content": "Determinism, please."}],
    }

    def call(b: dict) -> dict:
        response = http().post(f"{url}{path}", json=b, headers=ANTHROPIC_HEADERS)
        assert response.status_code == 200
        return response.json()

    first, second = call(body), call(body)
    other = call({**body, "messages": [{"role": "user", "content": "Something else."}]})
    assert first["id"] != second["id"]
    assert first["usage"] == second["usage"]
    text = lambda r: (
        r["choices"][0]["message"]["content"] if "choices" in r else r["content"][0]["text"]
    )
    assert text(first) == text(second) != text(other)


# --- 3. errors through the SDKs ----------------------------------------------------------------


def test_rate_limit_via_config_gives_429_with_retry_after(url):
    configure(url, rpm=1)
    with pytest.raises(openai.RateLimitError) as caught:
        for _ in range(3):
            chat(oai(url))
    err = caught.value
    assert err.code == "rate_limit_exceeded" and err.type == "requests"
    assert int(err.response.headers["retry-after"]) >= 1
    assert int(err.response.headers["retry-after-ms"]) >= 1
    assert err.response.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.request_id == err.response.headers["x-request-id"]
    with pytest.raises(anthropic.RateLimitError) as caught_a:
        for _ in range(3):
            message(ant(url))
    assert caught_a.value.body["error"]["type"] == "rate_limit_error"
    assert int(caught_a.value.response.headers["retry-after"]) >= 1
    assert caught_a.value.request_id.startswith("req_")


def test_token_limit_gives_429_of_type_tokens(url):
    configure(url, tpm=20)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(oai(url), "A prompt whose answer has at least sixteen tokens")
    assert caught.value.type == "tokens" and caught.value.code == "rate_limit_exceeded"


def test_env_knobs_rpm_and_api_key(limited_server):
    url = limited_server
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(oai(url, "sk-wrong"))
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    assert caught.value.body["type"] == "invalid_request_error"
    missing = http().post(f"{url}/v1/chat/completions", json={})
    assert missing.status_code == 401 and missing.json()["error"]["code"] is None
    with pytest.raises(anthropic.AuthenticationError) as caught_a:
        message(ant(url, "sk-wrong"))
    assert caught_a.value.body["error"]["type"] == "authentication_error"
    chat(oai(url, "sk-right"))
    chat(oai(url, "sk-right"))
    with pytest.raises(openai.RateLimitError):
        chat(oai(url, "sk-right"))
    message(ant(url, "sk-right"))  # the limit is per wire format


def test_quota_exhausted_is_visible_in_the_error_code(url):
    configure(url, quota_exhausted=True)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(oai(url))
    assert caught.value.code == "insufficient_quota" and caught.value.type == "insufficient_quota"
    assert message(ant(url)).stop_reason == "end_turn"


def test_outage_window_fails_calls_until_it_ends(url):
    configure(url, outages=[{"start_s": 0, "duration_s": 1.0}])
    started = time.monotonic()
    with pytest.raises(openai.InternalServerError) as caught:
        chat(oai(url))
    assert caught.value.status_code == 503 and caught.value.type == "server_error"
    with pytest.raises(anthropic.InternalServerError) as caught_a:
        message(ant(url))
    assert isinstance(caught_a.value, anthropic.OverloadedError)
    assert caught_a.value.status_code == 529
    assert caught_a.value.body["error"]["type"] == "overloaded_error"
    time.sleep(max(0.0, 1.05 - (time.monotonic() - started)))
    assert chat(oai(url)).choices[0].finish_reason == "stop"
    assert message(ant(url)).stop_reason == "end_turn"


def test_outage_can_target_one_wire_format(url):
    configure(url, outages=[{"duration_s": 30, "wire": "openai", "status": 500}])
    with pytest.raises(openai.InternalServerError) as caught:
        chat(oai(url))
    assert caught.value.status_code == 500
    assert message(ant(url)).stop_reason == "end_turn"


def test_error_rate_one_gives_retryable_server_errors(url):
    configure(url, error_rate=1.0)
    statuses = set()
    for _ in range(12):
        with pytest.raises(openai.InternalServerError) as caught:
            chat(oai(url))
        assert caught.value.type == "server_error"
        statuses.add(("openai", caught.value.status_code))
        with pytest.raises(anthropic.InternalServerError) as caught_a:
            message(ant(url))
        expected = {500: "api_error", 529: "overloaded_error"}[caught_a.value.status_code]
        assert caught_a.value.body["error"]["type"] == expected
        statuses.add(("anthropic", caught_a.value.status_code))
    assert statuses == {("openai", 500), ("openai", 503), ("anthropic", 500), ("anthropic", 529)}


def test_bad_requests_give_400_in_each_format(url):
    response = http().post(f"{url}/v1/chat/completions", json={"model": OPENAI_MODEL})
    assert response.status_code == 400
    assert response.headers["x-request-id"].startswith("req_")
    assert "x-ratelimit-limit-requests" in response.headers
    assert response.json() == {
        "error": {
            "message": "Missing required parameter: 'messages'.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "missing_required_parameter",
        }
    }

    response = http().post(
        f"{url}/v1/messages",
        headers=ANTHROPIC_HEADERS,
        json={"model": ANTHROPIC_MODEL, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 400
    assert response.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        "request_id": response.headers["request-id"],
    }

    with pytest.raises(openai.BadRequestError) as caught:
        chat(oai(url), temperature=3)
    assert caught.value.param == "temperature"
    with pytest.raises(anthropic.BadRequestError) as caught_a:
        message(ant(url), extra_body={"temperature": 1.5})
    assert caught_a.value.body["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError):
        ant(url).messages.create(
            model=ANTHROPIC_MODEL, max_tokens=10, messages=[{"role": "system", "content": "nope"}]
        )


def test_api_key_set_at_run_time(url):
    configure(url, api_key="sk-ant-test")
    with pytest.raises(openai.AuthenticationError) as caught:
        chat(oai(url, "sk-test"))
    assert caught.value.code == "invalid_api_key"
    assert message(ant(url, "sk-ant-test")).stop_reason == "end_turn"


# --- 4. malformed bodies -----------------------------------------------------------------------


def _malformation(response: httpx.Response) -> str:
    if response.headers["content-type"].startswith("text/html"):
        return "html"
    try:
        json.loads(response.content)
    except ValueError:
        return "invalid_json" if response.content.rstrip().endswith(b"}") else "truncated"
    return "valid"


def test_malformed_rate_one_gives_every_malformation(url):
    configure(url, malformed_rate=1.0)
    seen = set()
    for path in ("/v1/chat/completions", "/v1/messages") * 3:
        response = http().post(
            f"{url}{path}",
            headers=ANTHROPIC_HEADERS,
            json={
                "model": OPENAI_MODEL,
                "max_tokens": 50,
                "messages": [{"role": "user", "content": "break it"}],
            },
        )
        assert response.status_code == 200
        seen.add(_malformation(response))
    assert seen == {"html", "invalid_json", "truncated"}


# --- 5. stats, config, latency -----------------------------------------------------------------


def test_stats_count_what_was_served(url):
    http().delete(f"{url}/_sim/stats").raise_for_status()
    chat(oai(url))
    chat(oai(url), max_tokens=3)
    message(ant(url))
    http().post(f"{url}/v1/chat/completions", json={"model": "gpt-4.1"})
    stats = http().get(f"{url}/_sim/stats").json()
    assert stats["requests"]["total"] == 4
    assert stats["requests"]["by_wire"] == {"openai": 3, "anthropic": 1}
    assert stats["requests"]["by_model"] == {ANTHROPIC_MODEL: 1, OPENAI_MODEL: 2}
    assert stats["responses"]["by_status"] == {"200": 3, "400": 1}
    assert sum(row["total"] for row in stats["requests_per_minute"].values()) == 4
    assert stats["max_requests_per_minute"]["total"] >= 2
    assert stats["tokens"]["output"] > 3


def test_config_rejects_invalid_values_and_keeps_the_old_ones(url):
    response = http().post(f"{url}/_sim/config", json={"error_rate": 2})
    assert response.status_code == 422
    response = http().post(f"{url}/_sim/config", json={"no_such_knob": 1})
    assert response.status_code == 422
    assert http().get(f"{url}/_sim/config").json()["error_rate"] == 0


async def _raw_post(url: str, path: str, body: bytes) -> int:
    """One HTTP/1.1 call on its own connection; a minimal client so the timing is the server's."""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    await reader.read()
    writer.close()
    return status


def test_latency_does_not_block_concurrent_calls(url):
    configure(url, latency_ms=200, latency_sigma=0)
    body = json.dumps({"model": OPENAI_MODEL, "messages": [{"role": "user", "content": "slow"}]})

    async def run() -> float:
        started = time.monotonic()
        statuses = await asyncio.gather(
            *(_raw_post(url, "/v1/chat/completions", body.encode()) for _ in range(200))
        )
        assert statuses == [200] * 200
        return time.monotonic() - started

    elapsed = asyncio.run(run())
    assert 0.2 <= elapsed < 2.0  # one at a time would take 40 s


def test_recorded_answers_replay_by_model_tier(url, tmp_path):
    table = tmp_path / "answers.csv"
    table.write_text(
        "prompt,weak_response,strong_response\n"
        '"How many legs do 3 spiders have?","3 x 8 = 24\n#### 24","Three spiders have 24 legs."\n'
    )
    configure(
        url,
        replay_path=str(table),
        replay_weak_column="weak_response",
        replay_strong_column="strong_response",
        replay_strong_models=["gpt-4o"],
    )
    ask = "How many legs do 3 spiders have?\n\nEnd with #### <number>."
    weak = oai(url).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": ask}], max_tokens=100
    )
    strong = oai(url).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": ask}], max_tokens=100
    )
    other = oai(url).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "unknown"}], max_tokens=100
    )
    assert weak.choices[0].message.content == "3 x 8 = 24\n#### 24"
    assert strong.choices[0].message.content == "Three spiders have 24 legs."
    assert "####" not in other.choices[0].message.content  # generated as usual
