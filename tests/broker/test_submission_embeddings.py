"""Embedding requests through the real submission path: what is stored and queued, and the
400s that name the models a request of each kind may use."""

from __future__ import annotations

import pytest

from broker import queues, redis_keys
from broker.config.broker_toml import load_config
from broker.errors import InvalidRequest
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate
from broker.store import Request
from broker.submission import Submitter

EMBED = "text-embedding-3-small"


def batch(**request) -> JobCreate:
    return JobCreate(feature="search", requests=[{"custom_id": "r0", **request}])


@pytest.fixture
def submitter(db, redis_client) -> Submitter:
    return Submitter(db, redis_client, load_config())


def test_an_embedding_request_is_stored_and_queued_with_no_output_tokens(
    submitter, db, redis_client
):
    config = submitter.config
    body = batch(model=EMBED, input=["hello", "wörld"], dimensions=64, encoding_format="base64")
    job = submitter.submit(config.team("product"), body)
    with db.session() as session:
        row = session.query(Request).filter_by(job_id=job.id).one()
        assert row.model == EMBED
        assert row.payload == {
            "kind": "embedding",
            "input": ["hello", "wörld"],
            "dimensions": 64,
            "encoding_format": "base64",
        }
    [raw] = redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1)
    entry = QueueEntry.decode(raw)
    assert entry.max_output == 0
    assert entry.input_bound == len("hello") + len("wörld".encode()) + 2 * queues.FRAMING_TOKENS
    assert entry.input_bound == queues.payload_input_bound(row.payload)


@pytest.mark.parametrize(
    ("request_fields", "field", "words"),
    [
        (
            {"model": "gpt-4o-mini", "input": ["x"]},
            "requests[0].model",
            "'gpt-4o-mini' is a model for chat requests, not embedding ones; "
            f"embedding models: {EMBED}",
        ),
        (
            {"model": EMBED, "messages": [{"role": "user", "content": "x"}]},
            "requests[0].model",
            f"'{EMBED}' is a model for embedding requests, not chat ones; chat models: claude-",
        ),
        (
            {"model": "auto", "input": ["x"]},
            "requests[0].model",
            "'auto' is a route of chat models at requests[0]; an embedding request needs an "
            f"embedding model: {EMBED}",
        ),
        ({"input": ["x"]}, "requests[0].model", "no model at requests[0]; an embedding request"),
    ],
)
def test_a_request_on_a_model_of_the_other_kind_is_refused_naming_the_allowed_ones(
    submitter, request_fields, field, words
):
    with pytest.raises(InvalidRequest) as info:
        submitter.validate(batch(**request_fields))
    assert info.value.field == field
    assert words in info.value.message


def test_a_request_is_chat_or_embedding_never_both_or_neither():
    with pytest.raises(ValueError, match=r"messages\n.*Field required \(or input"):
        batch(model=EMBED)
    with pytest.raises(ValueError, match="not both"):
        batch(model=EMBED, input=["x"], messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="for embedding requests"):
        batch(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}], dimensions=8)
