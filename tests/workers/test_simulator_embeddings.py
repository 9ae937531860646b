"""The simulator's ``POST /v1/embeddings``, in process, spoken to by the official SDK."""

from __future__ import annotations

import math
from collections.abc import Iterator

import openai
import pytest
from starlette.testclient import TestClient

from workers.simulator.app import create_app
from workers.simulator.embeddings import NATIVE_DIMENSIONS, vector
from workers.simulator.settings import SimulatorSettings

MODEL = "text-embedding-3-small"


@pytest.fixture
def http() -> Iterator[TestClient]:
    with TestClient(create_app(SimulatorSettings(latency_ms=0))) as client:
        yield client


def sdk(http: TestClient, strict: bool = True) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1",
        api_key="x",
        http_client=http,
        max_retries=0,
        _strict_response_validation=strict,
    )


def test_floats_pass_strict_validation_and_are_deterministic_unit_vectors(http):
    texts = ["the cat sat", "a dog ran", "the cat sat"]
    got = sdk(http).embeddings.create(model=MODEL, input=texts, encoding_format="float")
    assert got.object == "list" and got.model == MODEL
    assert [d.index for d in got.data] == [0, 1, 2]
    vectors = [d.embedding for d in got.data]
    assert len(vectors[0]) == NATIVE_DIMENSIONS[MODEL]
    assert vectors[0] == vectors[2] != vectors[1]
    assert all(abs(math.sqrt(sum(v * v for v in vec)) - 1) < 1e-6 for vec in vectors)
    assert got.usage.prompt_tokens == got.usage.total_tokens == 3 + 3 + 3  # 4 bytes a token
    again = sdk(http).embeddings.create(model=MODEL, input="a dog ran", encoding_format="float")
    assert again.data[0].embedding == vectors[1]


def test_the_sdks_default_base64_decodes_to_the_same_vectors(http):
    floats = sdk(http).embeddings.create(model=MODEL, input="hello", encoding_format="float")
    # The SDK asks for base64 by default and decodes it after validation: strict validation
    # of its own List[float] type refuses the string, against OpenAI too, so not strict here.
    decoded = sdk(http, strict=False).embeddings.create(model=MODEL, input="hello")
    pairs = zip(decoded.data[0].embedding, floats.data[0].embedding, strict=True)
    assert all(abs(a - b) < 1e-7 for a, b in pairs)
    asked = {"model": MODEL, "input": "hi", "encoding_format": "base64"}
    raw = http.post("/v1/embeddings", json=asked)
    assert isinstance(raw.json()["data"][0]["embedding"], str)


def test_dimensions_and_token_arrays(http):
    got = sdk(http).embeddings.create(
        model=MODEL, input=[[1, 2, 3], [4]], dimensions=16, encoding_format="float"
    )
    assert [len(d.embedding) for d in got.data] == [16, 16]
    assert got.usage.prompt_tokens == 4
    assert got.data[0].embedding == vector(MODEL, [1, 2, 3], 16)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": MODEL, "input": []}, "input"),
        ({"model": MODEL, "input": ["ok", ""]}, "input[1]"),
        ({"model": MODEL, "input": "x", "dimensions": 4000}, "dimensions"),
        ({"model": MODEL, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": MODEL}, "input"),
    ],
)
def test_bad_bodies_are_400s_naming_the_param(http, body, param):
    response = http.post("/v1/embeddings", json=body)
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param
    if "input" in body:  # the SDK requires it
        with pytest.raises(openai.BadRequestError):
            sdk(http).embeddings.create(**{"encoding_format": "float", **body})
