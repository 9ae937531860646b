"""The OpenAI adapter's embeddings path: the stored payload to ``/v1/embeddings`` and back,
against the simulator in process and against canned bodies."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from starlette.testclient import TestClient

from broker.config.broker_toml import ModelConfig
from broker.errors import MalformedResponse, ProviderRejected
from workers.providers import ProviderClient, completion_cost
from workers.providers.anthropic import ADAPTER as ANTHROPIC
from workers.simulator.app import create_app
from workers.simulator.embeddings import vector
from workers.simulator.settings import SimulatorSettings

EMBED = ModelConfig(
    name="text-embedding-3-small",
    provider="sim-openai",
    provider_model_id="text-embedding-3-small",
    kind="embedding",
    input_price=Decimal("0.02"),
    output_price=Decimal("0"),
    cached_input_price=Decimal("0"),
    context_window=8192,
)
PAYLOAD = {"kind": "embedding", "input": ["alpha", "beta gamma"], "dimensions": 8,
           "encoding_format": "base64"}  # fmt: skip


def simulated(provider) -> tuple[ProviderClient, list[dict]]:
    """A client whose calls reach the simulator app; the request bodies it sent."""
    app = TestClient(create_app(SimulatorSettings(latency_ms=0)))
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append({"path": request.url.path, **json.loads(request.content)})
        answer = app.post(request.url.path, content=request.content, headers=request.headers)
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return ProviderClient(provider, None, transport=httpx.MockTransport(handler)), sent


def test_the_vectors_come_back_as_the_answer_text_and_cost_input_tokens_only(openai_provider):
    client, sent = simulated(openai_provider)
    completion = client.complete(EMBED, PAYLOAD)
    # Always floats from the provider, whatever the caller asked: the surface re-encodes.
    assert sent == [{"path": "/v1/embeddings", "model": "text-embedding-3-small",
                     "input": ["alpha", "beta gamma"], "encoding_format": "float",
                     "dimensions": 8}]  # fmt: skip
    vectors = json.loads(completion.text)
    assert vectors == [vector(EMBED.provider_model_id, t, 8) for t in PAYLOAD["input"]]
    assert (completion.input_tokens, completion.output_tokens) == (2 + 3, 0)
    assert completion.finish_reason == "stop" and completion.model == EMBED.provider_model_id
    pricey = EMBED.model_copy(update={"input_price": Decimal("20"), "output_price": Decimal("9")})
    assert completion_cost(completion, pricey) == 5 * 20  # micro-dollars: input tokens only


def test_dimensions_are_left_out_when_not_asked(openai_provider):
    client, sent = simulated(openai_provider)
    completion = client.complete(EMBED, {**PAYLOAD, "dimensions": None})
    assert "dimensions" not in sent[0]
    assert len(json.loads(completion.text)[0]) == 1536


def body(data, usage=None) -> bytes:
    usage = usage or {"prompt_tokens": 3, "total_tokens": 3}
    return json.dumps({"object": "list", "data": data, "model": "m", "usage": usage}).encode()


def item(index, embedding):
    return {"object": "embedding", "index": index, "embedding": embedding}


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (body([]), "empty array"),
        (body([item(0, [0.1]), item(0, [0.2])]), "index 0 appears twice"),
        (body([item(1, [0.1])]), "expected 0..0"),
        (body([item(0, "AAAA")]), "expected an array"),
        (body([item(0, [0.1, "x"])]), "array of numbers"),
        (body([item(0, [0.1])], usage={"total_tokens": 3}), "usage.prompt_tokens"),
    ],
)
def test_an_unreadable_body_is_malformed_saying_why(openai_provider, raw, words):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=raw, headers={"content-type": "application/json"})

    client = ProviderClient(openai_provider, None, transport=httpx.MockTransport(handler))
    with pytest.raises(MalformedResponse, match=words):
        client.complete(EMBED, PAYLOAD)


def test_vectors_are_kept_in_index_order(openai_provider):
    raw = body([item(1, [0.5]), item(0, [0.25])])

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=raw, headers={"content-type": "application/json"})

    client = ProviderClient(openai_provider, None, transport=httpx.MockTransport(handler))
    assert json.loads(client.complete(EMBED, PAYLOAD).text) == [[0.25], [0.5]]


def test_the_anthropic_wire_refuses_an_embedding_payload():
    with pytest.raises(ProviderRejected, match="no embeddings endpoint"):
        ANTHROPIC.build(EMBED, PAYLOAD, None)
