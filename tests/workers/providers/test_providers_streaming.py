"""Streamed calls: each wire format's stream reader from literal SSE bytes, and
``ProviderClient.stream`` end to end over httpx.MockTransport.

The streams are the shapes of shared/DROPIN_REFERENCE.md §5 carrying the same answer as the
documented examples in conftest.py, so a streamed call must come back as the very
``Completion`` the non-streamed call returns.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import httpx
import httpx_sse
import pytest

from broker.errors import (
    ContextWindowExceeded,
    MalformedResponse,
    ProviderError,
    ProviderRateLimited,
    ProviderRejected,
    ProviderRetryable,
    ProviderUnavailable,
)
from workers.providers import Completion, ProviderClient, adapter_for

KEY = "sk-live-0123456789abcdefSECRET"
SSE = {"content-type": "text/event-stream; charset=utf-8"}

# The openai example's answer, streamed with stream_options.include_usage: no event names,
# a role chunk, two text chunks, the finish chunk, the usage chunk (empty choices), [DONE].
OPENAI_STREAM = b"""\
data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" there."},"logprobs":null,"finish_reason":null}],"usage":null}

data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}

data: {"id":"chatcmpl-abc123","object":"chat.completion.chunk","created":1731900000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}}}

data: [DONE]

"""

# The anthropic example's answer, streamed: named events, a ping among them.
ANTHROPIC_STREAM = b"""\
event: message_start
data: {"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-haiku-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":12,"output_tokens":1,"cache_creation_input_tokens":0,"cache_read_input_tokens":0}}}

event: content_block_start
data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

event: ping
data: {"type":"ping"}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}

event: content_block_delta
data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":" there."}}

event: content_block_stop
data: {"type":"content_block_stop","index":0}

event: message_delta
data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":30}}

event: message_stop
data: {"type":"message_stop"}

"""

STREAMS = {"openai": OPENAI_STREAM, "anthropic": ANTHROPIC_STREAM}
REQUEST_ID_HEADER = {"openai": "x-request-id", "anthropic": "request-id"}


def events(raw: bytes) -> list[tuple[str, str]]:
    """The (event name, data) pairs of literal SSE bytes, split as the client splits them."""
    response = httpx.Response(200, content=raw, headers=SSE)
    return [(sse.event, sse.data) for sse in httpx_sse.EventSource(response).iter_sse()]


def read(wire: str, raw: bytes, headers: dict | None = None) -> tuple[list[str], Completion]:
    """Feed ``raw`` to a fresh reader of ``wire``: the deltas it gave, and what it finished as."""
    reader = adapter_for(wire).stream_reader(200, httpx.Headers(headers or {}))
    deltas = [text for name, data in events(raw) if (text := reader.feed(name, data))]
    return deltas, reader.finish()


def without(raw: bytes, *needles: bytes) -> bytes:
    """``raw`` with every event mentioning one of ``needles`` left out."""
    kept = [e for e in raw.split(b"\n\n") if not any(n in e for n in needles)]
    return b"\n\n".join(kept)


def sse_event(data: dict, name: str | None = None) -> bytes:
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def cut_before(raw: bytes, needle: bytes) -> bytes:
    """``raw`` up to (not including) the event that mentions ``needle``."""
    return raw[: raw.index(needle)].rsplit(b"\n\n", 1)[0] + b"\n\n"


# --- the readers, from literal bytes -------------------------------------------------------------


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_a_stream_reads_as_the_completion_of_the_same_answer_sent_whole(
    wire: str, openai_example_text: str, anthropic_example_text: str
) -> None:
    headers = {REQUEST_ID_HEADER[wire]: "req_7"}
    deltas, completion = read(wire, STREAMS[wire], headers)
    assert deltas == ["Hello", " there."]
    whole = openai_example_text if wire == "openai" else anthropic_example_text
    json_headers = httpx.Headers({"content-type": "application/json", **headers})
    assert completion == adapter_for(wire).parse(200, json_headers, whole.encode())
    assert completion.provider_request_id == "req_7"


@pytest.mark.parametrize(
    ("wire", "body_id"),
    [("openai", "chatcmpl-abc123"), ("anthropic", "msg_01XFDUDYJgAACzvnptvVoYEL")],
)
def test_without_a_request_id_header_the_body_id_is_the_request_id(wire, body_id) -> None:
    assert read(wire, STREAMS[wire])[1].provider_request_id == body_id
    reader = adapter_for(wire).stream_reader()  # the defaults: a 200 with no headers
    for name, data in events(STREAMS[wire]):
        reader.feed(name, data)
    assert reader.finish().provider_request_id == body_id


def test_openai_cached_tokens_are_part_of_prompt_tokens() -> None:
    usage = b'"prompt_tokens":12,"completion_tokens":30,"total_tokens":42,'
    usage += b'"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}'
    cached = b'"prompt_tokens":2000,"completion_tokens":30,"total_tokens":2030,'
    cached += b'"prompt_tokens_details":{"cached_tokens":1500}'
    _, completion = read("openai", OPENAI_STREAM.replace(usage, cached))
    assert (completion.input_tokens, completion.cached_input_tokens) == (500, 1500)
    assert completion.output_tokens == 30


def test_openai_finish_reason_and_null_content_are_kept() -> None:
    raw = OPENAI_STREAM.replace(b'"finish_reason":"stop"', b'"finish_reason":"length"')
    raw = raw.replace(b'{"content":" there."}', b'{"content":null,"refusal":"no"}')
    deltas, completion = read("openai", raw)
    assert deltas == ["Hello"]
    assert (completion.text, completion.finish_reason) == ("Hello", "length")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (without(OPENAI_STREAM, b'"finish_reason":"stop"', b'"usage":{'),
         "the stream ended without a finish_reason or a usage chunk"),
        (without(OPENAI_STREAM, b'"usage":{'), "the stream ended without a usage chunk"),
        (without(OPENAI_STREAM, b'"finish_reason":"stop"'),
         "the stream ended without a finish_reason"),
        (b"data: [DONE]\n\n", "without a chunk naming the model or a finish_reason or a usage"),
        (b"", "the stream ended without a chunk naming the model"),
    ],
)  # fmt: skip
def test_an_openai_stream_that_ends_early_is_malformed(raw: bytes, words: str) -> None:
    with pytest.raises(MalformedResponse, match=words) as info:
        read("openai", raw, {"x-request-id": "req_1"})
    assert info.value.message.startswith("HTTP 200 event stream: ")
    assert (info.value.status, info.value.provider_request_id) == (200, "req_1")


@pytest.mark.parametrize(
    ("error", "cls", "status"),
    [
        ({"message": "The server had an error while processing your request.",
          "type": "server_error", "param": None, "code": None}, ProviderRetryable, 500),
        ({"message": "Rate limit reached", "type": "tokens", "param": None,
          "code": "rate_limit_exceeded"}, ProviderRateLimited, 429),
        ({"message": "You exceeded your current quota", "type": "insufficient_quota",
          "param": None, "code": "insufficient_quota"}, ProviderUnavailable, 429),
        ({"message": "Invalid 'messages'", "type": "invalid_request_error", "param": None,
          "code": None}, ProviderRejected, 400),
        ({"object": "error", "message": "This model's maximum context length is 4096 tokens.",
          "type": "BadRequestError", "param": None, "code": 400},  # vLLM: the status in code
         ContextWindowExceeded, 400),
    ],
)  # fmt: skip
def test_an_openai_error_chunk_raises_its_classified_error(error, cls, status) -> None:
    raw = cut_before(OPENAI_STREAM, b'"finish_reason":"stop"') + sse_event({"error": error})
    with pytest.raises(ProviderError) as info:
        read("openai", raw, {"x-request-id": "req_e"})
    assert type(info.value) is cls
    assert info.value.status == status and info.value.provider_request_id == "req_e"
    assert info.value.message.startswith("stream error")
    assert error["message"] in info.value.message


def test_anthropic_usage_splits_cache_fields_and_takes_the_cumulative_counts() -> None:
    start_usage = b'"usage":{"input_tokens":12,"output_tokens":1,'
    start_usage += b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0}'
    cache = b'"usage":{"input_tokens":100,"output_tokens":1,'
    cache += b'"cache_creation_input_tokens":900,"cache_read_input_tokens":5000}'
    raw = ANTHROPIC_STREAM.replace(start_usage, cache)
    raw = raw.replace(b'"usage":{"output_tokens":30}', b'"usage":{"output_tokens":1000}')
    _, completion = read("anthropic", raw)
    assert completion.input_tokens == 1_000  # uncached plus cache writes, as parse counts them
    assert completion.cached_input_tokens == 5_000
    assert completion.output_tokens == 1_000
    # message_delta's counts replace message_start's when present (null ones do not)
    delta_usage = b'"usage":{"input_tokens":7,"output_tokens":3,"cache_read_input_tokens":null}'
    raw = ANTHROPIC_STREAM.replace(b'"usage":{"output_tokens":30}', delta_usage)
    _, completion = read("anthropic", raw)
    assert (completion.input_tokens, completion.cached_input_tokens) == (7, 0)
    assert completion.output_tokens == 3


def test_anthropic_names_the_stop_sequence_that_ended_the_answer() -> None:
    stopped = b'"delta":{"stop_reason":"stop_sequence","stop_sequence":"##"}'
    raw = ANTHROPIC_STREAM.replace(
        b'"delta":{"stop_reason":"end_turn","stop_sequence":null}', stopped
    )
    _, completion = read("anthropic", raw)
    assert (completion.finish_reason, completion.stop_sequence) == ("stop_sequence", "##")
    assert read("anthropic", ANTHROPIC_STREAM)[1].stop_sequence is None


def test_anthropic_skips_other_blocks_pings_and_unnamed_or_unknown_events() -> None:
    thinking = (
        sse_event({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "thinking", "thinking": ""}}, "content_block_start")
        + sse_event({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "thinking_delta", "thinking": "hmm"}}, "content_block_delta")
        + sse_event({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "signature_delta", "signature": "sig"}},
                    "content_block_delta")
        + sse_event({"type": "content_block_delta", "index": 0,
                     "delta": {"type": "text_delta", "text": "unnamed"}})  # no event: skipped
        + sse_event({"type": "future_thing"}, "future_thing")
    )  # fmt: skip
    first = b"event: content_block_start"
    raw = ANTHROPIC_STREAM.replace(first, thinking + first, 1)
    deltas, completion = read("anthropic", raw)
    assert deltas == ["Hello", " there."] and completion.text == "Hello there."


def test_anthropic_text_in_a_block_start_is_text() -> None:
    raw = ANTHROPIC_STREAM.replace(b'"type":"text","text":""', b'"type":"text","text":"Oh. "')
    deltas, completion = read("anthropic", raw)
    assert deltas == ["Oh. ", "Hello", " there."] and completion.text == "Oh. Hello there."


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (without(ANTHROPIC_STREAM, b"message_stop"), "the stream ended without message_stop"),
        (without(ANTHROPIC_STREAM, b"message_delta"),
         "without a message_delta with a stop_reason"),
        (cut_before(ANTHROPIC_STREAM, b'" there."'),
         "without a message_delta with a stop_reason or message_stop"),
        (without(ANTHROPIC_STREAM, b"message_start"), "without message_start"),
        (b"", "without message_start or a message_delta with a stop_reason or message_stop"),
    ],
)  # fmt: skip
def test_an_anthropic_stream_that_ends_early_is_malformed(raw: bytes, words: str) -> None:
    with pytest.raises(MalformedResponse, match=words) as info:
        read("anthropic", raw, {"request-id": "req_1"})
    assert info.value.message.startswith("HTTP 200 event stream: ")
    assert (info.value.status, info.value.provider_request_id) == (200, "req_1")


def test_anthropic_missing_usage_is_malformed_at_the_end() -> None:
    raw = ANTHROPIC_STREAM.replace(b'"input_tokens":12,', b"")
    with pytest.raises(MalformedResponse, match="missing field 'usage.input_tokens'"):
        read("anthropic", raw)


@pytest.mark.parametrize(
    ("kind", "cls", "status"),
    [
        ("overloaded_error", ProviderRetryable, 529),
        ("api_error", ProviderRetryable, 500),
        ("rate_limit_error", ProviderRateLimited, 429),
        ("invalid_request_error", ProviderRejected, 400),
        ("authentication_error", ProviderUnavailable, 401),
        ("something_new", ProviderRetryable, 500),
    ],
)
def test_an_anthropic_error_event_raises_what_classify_gives_its_type(kind, cls, status) -> None:
    error = {"type": "error", "error": {"type": kind, "message": "Overloaded"}}
    raw = cut_before(ANTHROPIC_STREAM, b'" there."') + sse_event(error, "error")
    with pytest.raises(ProviderError) as info:
        read("anthropic", raw)
    assert type(info.value) is cls
    assert info.value.status == status
    assert info.value.message == f"stream error {kind}: Overloaded"
    # the message id from message_start names the request when no header did
    assert info.value.provider_request_id == "msg_01XFDUDYJgAACzvnptvVoYEL"
    # the same class classify gives a response of that status carrying the same body
    body = json.dumps(error).encode()
    headers = httpx.Headers({"content-type": "application/json"})
    assert type(adapter_for("anthropic").classify(status, headers, body, "p")) is cls


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("data", "words"),
    [
        ('{"type": "message_start", "message": {', "invalid JSON in an event"),
        ("[1, 2]", "event data is an array, expected an object"),
    ],
)
def test_an_unreadable_event_is_malformed(wire: str, data: str, words: str) -> None:
    name = "message_start" if wire == "anthropic" else "message"
    reader = adapter_for(wire).stream_reader()
    with pytest.raises(MalformedResponse, match=words):
        reader.feed(name, data)


def test_stream_build_asks_for_a_stream(mini, haiku, payload) -> None:
    openai, anthropic = adapter_for("openai"), adapter_for("anthropic")
    call = openai.stream_build(mini, payload, "sk-test")
    plain = openai.build(mini, payload, "sk-test")
    assert call.path == plain.path == "/v1/chat/completions"
    extra = {"stream": True, "stream_options": {"include_usage": True}}
    assert call.json == {**plain.json, **extra}
    assert call.headers == {**plain.headers, "accept": "text/event-stream"}
    call = anthropic.stream_build(haiku, payload, "sk-ant")
    plain = anthropic.build(haiku, payload, "sk-ant")
    assert call.json == {**plain.json, "stream": True} and call.path == plain.path
    assert call.headers == {**plain.headers, "accept": "text/event-stream"}


def test_stream_build_refuses_an_embedding_payload(mini) -> None:
    embedding = {"kind": "embedding", "input": ["a"]}
    for wire in ("openai", "anthropic"):
        with pytest.raises(ProviderRejected):
            adapter_for(wire).stream_build(mini, embedding, None)


# --- ProviderClient.stream over MockTransport ----------------------------------------------------


def serving(wire: str, whole: str, *, stream: bytes | None = None) -> Callable:
    """A handler answering a streamed request with ``stream`` (the wire's documented stream by
    default) and any other with ``whole``, both with the same request-id and rate headers."""
    headers = {REQUEST_ID_HEADER[wire]: "req_s", "x-ratelimit-remaining-requests": "99"}
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append({"accept": request.headers["accept"], **body})
        if body.get("stream"):
            content = STREAMS[wire] if stream is None else stream
            return httpx.Response(200, content=content, headers={**SSE, **headers})
        json_headers = {"content-type": "application/json", **headers}
        return httpx.Response(200, content=whole.encode(), headers=json_headers)

    handler.sent = sent  # type: ignore[attr-defined]
    return handler


def client_for(provider, handler: Callable, key: str | None = KEY) -> ProviderClient:
    return ProviderClient(provider, key, transport=httpx.MockTransport(handler))


@pytest.mark.parametrize("wire", ["openai", "anthropic"])
def test_deltas_arrive_in_order_and_the_completion_is_the_plain_calls(
    wire, request, openai_example_text, anthropic_example_text, payload
) -> None:
    provider = request.getfixturevalue(f"{wire}_provider")
    model = request.getfixturevalue("mini" if wire == "openai" else "haiku")
    whole = openai_example_text if wire == "openai" else anthropic_example_text
    handler = serving(wire, whole)
    deltas: list = []
    with client_for(provider, handler) as client:
        streamed = client.stream(model, payload, deltas.append, deltas.append)
        plain = client.complete(model, payload)
    if wire == "anthropic":  # message_start's input usage, before the text
        assert deltas == [(plain.input_tokens, plain.cached_input_tokens), "Hello", " there."]
    else:  # an OpenAI stream reports usage only at its end
        assert deltas == ["Hello", " there."]
    assert streamed == plain
    assert streamed.rate is not None and streamed.rate.remaining_requests == 99
    asked, answered = handler.sent  # type: ignore[attr-defined]
    assert asked["stream"] is True and "stream" not in answered
    assert asked["accept"] == "text/event-stream"


@pytest.mark.parametrize(
    ("wire", "status", "body", "cls"),
    [
        ("openai", 429, {"error": {"message": f"Rate limit for {KEY}", "type": "requests",
                                   "code": None}}, ProviderRateLimited),
        ("openai", 401, {"error": {"message": f"Incorrect API key provided: {KEY}.",
                                   "type": "invalid_request_error"}}, ProviderUnavailable),
        ("anthropic", 529, {"type": "error", "error": {"type": "overloaded_error",
                                                      "message": f"Overloaded {KEY}"}},
         ProviderRetryable),
    ],
)  # fmt: skip
def test_a_non_2xx_is_classified_as_complete_classifies_it(
    wire, status, body, cls, request, payload
) -> None:
    provider = request.getfixturevalue(f"{wire}_provider")
    model = request.getfixturevalue("mini" if wire == "openai" else "haiku")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=body, headers={"retry-after": "2"})

    deltas: list[str] = []
    errors: list[ProviderError] = []
    with client_for(provider, handler) as client:
        for call in (lambda: client.stream(model, payload, deltas.append),
                     lambda: client.complete(model, payload)):  # fmt: skip
            with pytest.raises(cls) as info:
                call()
            errors.append(info.value)
    streamed, plain = errors
    assert deltas == [] and type(streamed) is type(plain) is cls
    assert (streamed.message, streamed.status) == (plain.message, plain.status)
    assert streamed.provider == provider.name and str(streamed) == str(plain)
    for shown in (str(streamed), repr(streamed), streamed.message):
        assert KEY not in shown and "***" in shown


def test_an_error_event_mid_stream_is_owned_and_scrubbed(anthropic_provider, haiku, payload):
    error = {"type": "error", "error": {"type": "overloaded_error", "message": f"bad {KEY}"}}
    raw = cut_before(ANTHROPIC_STREAM, b'" there."') + sse_event(error, "error")
    handler = serving("anthropic", "", stream=raw)
    deltas: list[str] = []
    client = client_for(anthropic_provider, handler)
    with client, pytest.raises(ProviderRetryable) as info:
        client.stream(haiku, payload, deltas.append)
    assert deltas == ["Hello"]  # what came before the error was delivered
    assert info.value.provider == "sim-anthropic" and info.value.provider_request_id == "req_s"
    assert str(info.value) == "sim-anthropic: stream error overloaded_error: bad ***"


def test_a_truncated_stream_is_malformed_naming_the_provider(openai_provider, mini, payload):
    raw = without(OPENAI_STREAM, b'"usage":{', b"[DONE]")
    handler = serving("openai", "", stream=raw)
    with client_for(openai_provider, handler) as client, pytest.raises(MalformedResponse) as info:
        client.stream(mini, payload, lambda text: None)
    assert str(info.value) == (
        "sim-openai: HTTP 200 event stream: the stream ended without a usage chunk"
    )


def test_a_2xx_that_is_not_an_event_stream_is_malformed(
    openai_provider, mini, payload, openai_example_text
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:  # a server that ignores "stream"
        headers = {"content-type": "application/json"}
        return httpx.Response(200, content=openai_example_text.encode(), headers=headers)

    deltas: list[str] = []
    with client_for(openai_provider, handler) as client, pytest.raises(MalformedResponse) as info:
        client.stream(mini, payload, deltas.append)
    assert deltas == []
    assert str(info.value) == (
        "sim-openai: HTTP 200: expected an event stream, got content type 'application/json'"
    )


def test_a_connection_lost_mid_stream_is_retryable(anthropic_provider, haiku, payload) -> None:
    head = cut_before(ANTHROPIC_STREAM, b'" there."')

    def body() -> Iterator[bytes]:
        yield head
        raise httpx.ReadError(f"connection reset ({KEY})")

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body(), headers=SSE)

    deltas: list[str] = []
    client = client_for(anthropic_provider, handler)
    with client, pytest.raises(ProviderRetryable) as info:
        client.stream(haiku, payload, deltas.append)
    assert deltas == ["Hello"]
    assert str(info.value) == "sim-anthropic: transport error: ReadError: connection reset (***)"
    assert isinstance(info.value.__cause__, httpx.ReadError)


def test_an_exception_from_on_delta_propagates_as_it_is(
    openai_provider, mini, payload, openai_example_text
) -> None:
    closed: list[bool] = []

    class Tracked(httpx.ByteStream):
        def close(self) -> None:
            closed.append(True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Tracked(OPENAI_STREAM), headers=SSE)

    class Stop(Exception):
        pass

    def on_delta(text: str) -> None:
        raise Stop(text)

    with client_for(openai_provider, handler) as client, pytest.raises(Stop, match="Hello"):
        client.stream(mini, payload, on_delta)
    assert closed == [True]  # the response was closed, not left half read


def test_an_embedding_payload_is_sent_whole(openai_provider, mini) -> None:
    answer = {"object": "list", "model": "m", "usage": {"prompt_tokens": 1, "total_tokens": 1},
              "data": [{"object": "embedding", "index": 0, "embedding": [0.5]}]}  # fmt: skip
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(200, json=answer)

    deltas: list[str] = []
    with client_for(openai_provider, handler) as client:
        completion = client.stream(mini, {"kind": "embedding", "input": ["a"]}, deltas.append)
    assert deltas == [] and json.loads(completion.text) == [[0.5]]
    assert "stream" not in sent[0]
