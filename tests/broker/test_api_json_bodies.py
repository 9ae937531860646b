"""A batch's JSON body is read exactly (an integer beyond 64 bits stays that integer: orjson
would have made it a float), and one that is not JSON is a 422 saying so."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from broker.api import create_app
from broker.config.settings import Settings
from broker.store import Request

PRODUCT = {"Authorization": "Bearer ib-dev-product", "content-type": "application/json"}


@pytest.fixture
def api(settings: Settings, redis_client) -> TestClient:
    with TestClient(create_app(settings)) as client:
        yield client


def chat(**extra) -> dict:
    return {
        "custom_id": "a",
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Give me a number."}],
        **extra,
    }


def test_an_integer_beyond_64_bits_is_kept_exactly(api, db):
    huge = 10**30  # beyond 64 bits: orjson.loads returns 1e+30
    schema = {"type": "object", "properties": {"n": {"type": "integer", "maximum": huge}}}
    response_format = {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    body = {"feature": "extraction", "requests": [chat(response_format=response_format)]}
    resp = api.post("/v1/jobs", content=json.dumps(body), headers=PRODUCT)
    assert resp.status_code == 201, resp.text
    with db.session() as session:
        payload = session.scalar(select(Request.payload).where(Request.job_id == resp.json()["id"]))
    stored = payload["response_format"]["json_schema"]["schema"]["properties"]["n"]["maximum"]
    assert stored == huge and isinstance(stored, int)


def test_a_body_that_is_not_json_is_a_422_naming_where(api):
    resp = api.post("/v1/jobs", content='{"feature": "chatbot", "requests": [', headers=PRODUCT)
    assert resp.status_code == 422, resp.text
    error = resp.json()["error"]
    assert "JSON" in error["message"]


def test_an_ordinary_batch_is_read(api):
    body = {"feature": "chatbot", "requests": [chat(custom_id=f"r{i}") for i in range(3)]}
    resp = api.post("/v1/jobs", json=body, headers=PRODUCT)
    assert resp.status_code == 201, resp.text
    assert resp.json()["counts"]["total"] == 3
