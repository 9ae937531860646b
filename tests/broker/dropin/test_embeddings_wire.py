"""OpenAI embeddings bodies in, ``CreateEmbeddingResponse`` objects and batch lines out: pure
functions, checked against the official SDK's own types."""

from __future__ import annotations

import base64
import json
import struct
from datetime import UTC, datetime

import pytest
from openai.types import CreateEmbeddingResponse

from broker.dropin.embeddings_wire import embeddings_request, embeddings_response
from broker.dropin.openai_batches import output_line, parse_lines
from broker.errors import InvalidRequest
from broker.store import Request

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
EMBED = "text-embedding-3-small"
VECTORS = [[0.25, -0.5, 0.125], [1.0, 0.0, -0.75]]


def test_a_string_or_a_list_of_strings_becomes_the_requests_input():
    one = embeddings_request({"model": EMBED, "input": "hello"}, "c")
    assert (one.input, one.model, one.encoding_format, one.dimensions) == (
        ["hello"], EMBED, None, None,
    )  # fmt: skip
    many = embeddings_request(
        {"model": EMBED, "input": ["a", "b"], "dimensions": 8, "encoding_format": "base64",
         "user": "u1"},
        "c",
    )  # fmt: skip
    assert many.input == ["a", "b"] and many.dimensions == 8
    assert many.encoding_format == "base64" and many.metadata == {"user_id": "u1"}
    assert many.is_embedding and many.messages is None


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"model": EMBED, "input": [1, 2, 3]}, "body.input", "token arrays are not supported"),
        ({"model": EMBED, "input": [[1, 2]]}, "body.input", "token arrays are not supported"),
        ({"model": EMBED, "input": []}, "body.input", "a non-empty list of strings"),
        ({"model": EMBED}, "body.input", "a non-empty list of strings"),
        ({"model": EMBED, "input": ["a", ""]}, "body.input[1]", "non-empty string"),
        ({"model": EMBED, "input": "a", "encoding_format": "int8"}, "body.encoding_format", "int8"),
        ({"model": EMBED, "input": "a", "dimensions": 0}, "body.dimensions", "greater than"),
        ({"input": "a"}, "body.model", "required"),
        ([1], "body.", "must be a JSON object"),
    ],
)
def test_a_wrong_body_is_a_400_naming_the_field(body, field, words):
    with pytest.raises(InvalidRequest) as info:
        embeddings_request(body, "c", where="body.")
    assert info.value.field == field
    assert words in info.value.message


def row(encoding: str | None = None, **kw) -> Request:
    payload = {"kind": "embedding", "input": ["a", "b"], "dimensions": None}
    if encoding:
        payload["encoding_format"] = encoding
    return Request(
        id="req_" + "ab" * 12 + "_0", job_id="job_" + "ab" * 12, seq=0, custom_id="c0",
        status="succeeded", model=EMBED, model_used=EMBED, created_at=T0, finished_at=T0,
        payload=payload, output=json.dumps(VECTORS), input_tokens=7, output_tokens=0,
        cost_micros=1, **kw,
    )  # fmt: skip


def test_the_response_carries_floats_or_base64_float32_as_asked():
    floats = embeddings_response(row("float"))
    parsed = CreateEmbeddingResponse.model_validate(floats, strict=True)
    assert [d.embedding for d in parsed.data] == VECTORS
    assert [d.index for d in parsed.data] == [0, 1]
    assert parsed.usage.prompt_tokens == parsed.usage.total_tokens == 7
    assert parsed.model == EMBED and floats["x_broker"]["request_id"].startswith("req_")
    assert embeddings_response(row())["data"][0]["embedding"] == VECTORS[0]  # float by default
    encoded = embeddings_response(row("base64"))["data"]
    for item, vector in zip(encoded, VECTORS, strict=True):
        raw = base64.b64decode(item["embedding"])
        assert list(struct.unpack(f"<{len(raw) // 4}f", raw)) == vector  # exact in float32


def test_an_embeddings_batch_reads_its_lines_and_writes_embedding_bodies():
    def line(custom_id: str, body: dict, url: str = "/v1/embeddings") -> bytes:
        return json.dumps({"custom_id": custom_id, "url": url, "body": body}).encode()

    parsed = parse_lines(
        [
            (1, line("a", {"model": EMBED, "input": "hi"})),
            (2, line("b", {"model": EMBED, "messages": [{"role": "user", "content": "x"}]})),
            (3, line("c", {"model": EMBED, "input": "hi"}, url="/v1/chat/completions")),
        ],
        "/v1/embeddings",
    )
    assert [r.custom_id for r in parsed.requests] == ["a"]
    assert parsed.requests[0].input == ["hi"]
    assert [(e["line"], e["param"]) for e in parsed.errors] == [(2, "body.input"), (3, "url")]
    out = output_line(row())
    assert out["response"]["status_code"] == 200
    body = CreateEmbeddingResponse.model_validate(out["response"]["body"], strict=True)
    assert [d.embedding for d in body.data] == VECTORS
