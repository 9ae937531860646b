"""Sampling and output parameters (``top_p``, ``stop``, ``seed``, ``top_k``,
``response_format``): how the request schema checks them, what the stored payload and the
cache key carry, and the 400 for one the model's provider cannot honour."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from broker import queues, redis_keys
from broker.cache.exact import request_key
from broker.config.broker_toml import load_config
from broker.errors import InvalidRequest
from broker.ids import new_job_id, request_id
from broker.queues import QueueEntry
from broker.schemas.http import JobCreate, RequestIn
from broker.store import Request
from broker.submission import Submitter, payload_of

ASK = [{"role": "user", "content": "Name a river."}]
SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "river",
        "schema": {"type": "object", "properties": {"name": {"type": "string"}}},
        "strict": True,
    },
}


def chat(**fields) -> RequestIn:
    return RequestIn(custom_id="r0", model="gpt-4o-mini", messages=ASK, **fields)


def refusal(**fields) -> tuple[str, str]:
    """The first validation error of a request with ``fields``: (field path, message)."""
    with pytest.raises(ValidationError) as info:
        chat(**fields)
    first = info.value.errors()[0]
    return ".".join(str(p) for p in first["loc"]), first["msg"]


# --- the schema ---------------------------------------------------------------------------------


def test_stop_is_a_list_of_up_to_four_non_empty_strings():
    assert chat(stop="END").stop == ["END"]
    assert chat(stop=["a", "b", "c", "d"]).stop == ["a", "b", "c", "d"]
    assert chat(stop=[]).stop is None  # no stop at all, as the providers read it
    assert refusal(stop=["a", "b", "c", "d", "e"]) == (
        "stop",
        "List should have at most 4 items after validation, not 5",
    )
    assert refusal(stop=["ok", ""]) == ("stop.1", "String should have at least 1 character")
    assert refusal(stop=3)[0] == "stop"


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({"top_p": -0.1}, "top_p", "greater than or equal to 0"),
        ({"top_k": 0}, "top_k", "greater than or equal to 1"),
        ({"top_k": 2.5}, "top_k", "valid integer"),
        ({"seed": 1.5}, "seed", "valid integer"),
        ({"seed": 2**63}, "seed", "less than"),
        ({"response_format": "json"}, "response_format", "valid dictionary"),
        ({"response_format": {"type": "xml"}}, "response_format.type", "'json_schema'"),
        (
            {"response_format": {"type": "json_schema"}},
            "response_format",
            'type json_schema needs json_schema: {"name": ..., "schema": {...}}',
        ),
        (
            {"response_format": {"type": "json_object", "json_schema": {"name": "x"}}},
            "response_format",
            "json_schema goes with type json_schema, not json_object",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
            "Field required",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "a river"}}},
            "response_format.json_schema.name",
            "should match pattern",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": 1}}},
            "response_format.json_schema.schema",
            "valid dictionary",
        ),
        (
            {"response_format": {"type": "json_object", "strict": True}},
            "response_format.strict",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(fields, field, words):
    got_field, message = refusal(**fields)
    assert got_field == field
    assert words in message


def test_an_embedding_request_takes_no_chat_parameters():
    with pytest.raises(ValidationError) as info:
        RequestIn(custom_id="e", input=["x"], stop="y", seed=3)
    message = info.value.errors()[0]["msg"]
    assert "stop, seed: for chat requests (messages), not embedding requests (input)" in message


# --- the payload and the cache key --------------------------------------------------------------


def test_a_request_without_them_keeps_its_payload_and_cache_key():
    payload = payload_of(chat(temperature=0.2))
    legacy = {"messages": ASK, "max_tokens": 256, "temperature": 0.2}
    assert payload == legacy
    assert request_key("team:product", "gpt-4o-mini", payload) == request_key(
        "team:product", "gpt-4o-mini", legacy
    )


def test_the_payload_carries_what_is_set_as_the_providers_read_it():
    payload = payload_of(chat(top_p=0.9, stop="END", seed=7, top_k=40, response_format=SCHEMA))
    assert payload == {
        "messages": ASK,
        "max_tokens": 256,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
        "top_k": 40,
        "response_format": SCHEMA,
    }
    # text is the default form: the same answer as none, so the same payload
    assert payload_of(chat(response_format={"type": "text"})) == payload_of(chat())


@pytest.mark.parametrize(
    "fields",
    [
        {"stop": "END"},
        {"seed": 7},
        {"response_format": {"type": "json_object"}},
        {"response_format": SCHEMA},
        {"top_p": 0.5},
        {"top_k": 5},
    ],
)
def test_requests_differing_only_in_a_parameter_get_different_cache_keys(fields):
    def key(request: RequestIn) -> str:
        return request_key("team:product", "gpt-4o-mini", payload_of(request))

    assert key(chat(**fields)) != key(chat())
    assert key(chat(**fields)) == key(chat(**fields))


def test_stop_sequences_as_a_string_or_a_list_of_one_share_a_key():
    def key(request: RequestIn) -> str:
        return request_key("team:product", "gpt-4o-mini", payload_of(request))

    assert key(chat(stop="END")) == key(chat(stop=["END"]))
    assert key(chat(stop=["END"])) != key(chat(stop=["END", "STOP"]))


# --- through submission -------------------------------------------------------------------------


@pytest.fixture
def submitter(db, redis_client) -> Submitter:
    return Submitter(db, redis_client, load_config())


def batch(**request) -> JobCreate:
    fields = {"custom_id": "r0", "model": "gpt-4o-mini", "messages": ASK, **request}
    return JobCreate(feature="search", requests=[fields])


def test_parameters_are_stored_and_a_schema_counts_in_the_input_bound(
    submitter, db, redis_client
):
    config = submitter.config
    job = submitter.submit(
        config.team("product"), batch(stop=["END"], seed=1, response_format=SCHEMA)
    )
    with db.session() as session:
        row = session.query(Request).filter_by(job_id=job.id).one()
        assert row.payload["stop"] == ["END"] and row.payload["seed"] == 1
        assert row.payload["response_format"] == SCHEMA
    [raw] = redis_client.lrange(redis_keys.team_queue("product", "medium"), 0, -1)
    entry = QueueEntry.decode(raw)
    plain = queues.input_token_bound(ASK)
    schema = json.dumps(SCHEMA["json_schema"], separators=(",", ":"))
    assert entry.input_bound == plain + len(schema) + queues.FRAMING_TOKENS
    assert entry.input_bound == queues.payload_input_bound(row.payload)


@pytest.mark.parametrize(
    ("request_fields", "field", "words"),
    [
        (
            {"model": "gpt-4o-mini", "top_k": 40},
            "requests[0].top_k",
            "top_k at requests[0] cannot go to model 'gpt-4o-mini': the OpenAI Chat "
            "Completions API has no top_k",
        ),
        (
            {"model": "auto", "top_k": 40},  # a route: its tiers are OpenAI models
            "requests[0].top_k",
            "the OpenAI Chat Completions API has no top_k",
        ),
        (
            {"model": "claude-haiku-4-5", "response_format": {"type": "json_object"}},
            "requests[0].response_format",
            "response_format at requests[0] cannot go to model 'claude-haiku-4-5': type "
            "json_object cannot be honoured by the Anthropic Messages API",
        ),
    ],
)
def test_a_parameter_the_models_provider_cannot_honour_is_a_400_naming_it(
    submitter, request_fields, field, words
):
    team = submitter.config.team("product")
    with pytest.raises(InvalidRequest) as info:
        submitter.submit(team, batch(**request_fields))
    assert info.value.field == field
    assert words in info.value.message


def test_what_each_provider_honours_is_accepted(submitter):
    submitter.validate(batch(model="claude-haiku-4-5", top_k=40, top_p=0.5, stop="END", seed=1))
    submitter.validate(batch(model="claude-haiku-4-5", response_format=SCHEMA))
    submitter.validate(batch(model="gpt-4o-mini", response_format={"type": "json_object"}))


def test_a_caller_may_name_the_job_before_it_exists(submitter, db):
    """An interactive call waits for its request's end before submitting it, so it picks the
    job's id (and with it the request's) itself."""
    job_id = new_job_id()
    job = submitter.submit(submitter.config.team("product"), batch(), job_id=job_id)
    assert job.id == job_id
    with db.session() as session:
        assert session.get(Request, request_id(job_id, 0)).job_id == job_id
