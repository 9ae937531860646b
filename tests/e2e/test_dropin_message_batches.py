"""The official Anthropic SDK's Message Batches, unchanged and strictly validating, against a
real stack: create (invalid requests end as errored results), poll, results, list paging,
cancel, delete, the beta path, auth, another team's batch and Idempotency-Key."""

from __future__ import annotations

import time
import uuid

import anthropic
import httpx
import pytest

from broker.local.stack import Stack
from broker.store import Database, Job

pytestmark = pytest.mark.e2e

PRODUCT, CONTENT = "ib-dev-product", "ib-dev-content"


def an(stack: Stack, key: str = PRODUCT, **kw) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=stack.api_url, api_key=key, max_retries=0, _strict_response_validation=True, **kw
    )


def req(custom_id: str, text: str, model: str = "claude-haiku-4-5", **params) -> dict:
    body = {
        "model": model,
        "max_tokens": 32,
        "messages": [{"role": "user", "content": f"{text} ({uuid.uuid4().hex[:8]})"}],
        **params,
    }
    return {"custom_id": custom_id, "params": body}


def wait_ended(batches, batch_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        batch = batches.retrieve(batch_id)
        if batch.processing_status == "ended" or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def test_create_poll_and_results_with_invalid_requests_errored(stack: Stack):
    with an(stack, default_headers={"x-broker-feature": "chatbot"}) as client:
        batch = client.messages.batches.create(
            requests=[
                req("ok-1", "Say one"),
                req("ok-2", "Say two", model="gpt-4o-mini", system="Be brief."),
                req("ok-stop", "Say three", stop_sequences=["."], top_k=5, top_p=0.5),
                req("bad-field", "Use a tool", tools=[{"name": "t", "input_schema": {}}]),
                req("bad-top-k", "Sample", model="gpt-4o-mini", top_k=5),
                req("bad-model", "Hello", model="claude-does-not-exist-9"),
                req("streamed", "Stream me", stream=True),
            ]
        )
        assert batch.id.startswith("msgbatch_") and batch.type == "message_batch"
        assert batch.processing_status in ("in_progress", "ended")
        assert sum(batch.request_counts.model_dump().values()) == 7
        assert (batch.expires_at - batch.created_at).total_seconds() == 24 * 3600

        ended = wait_ended(client.messages.batches, batch.id)
        assert ended.processing_status == "ended" and ended.ended_at is not None
        counts = ended.request_counts
        assert (counts.processing, counts.succeeded, counts.errored) == (0, 3, 4)
        assert ended.results_url == f"{stack.api_url}/v1/messages/batches/{batch.id}/results"

        results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert set(results) == {
        "ok-1",
        "ok-2",
        "ok-stop",
        "bad-field",
        "bad-top-k",
        "bad-model",
        "streamed",
    }
    for cid in ("ok-1", "ok-2", "ok-stop"):
        assert results[cid].type == "succeeded"
        message = results[cid].message
        assert message.role == "assistant" and message.content[0].text
        assert message.usage.input_tokens > 0 and message.stop_reason
    assert results["bad-model"].error.error.type == "not_found_error"
    assert "claude-does-not-exist-9" in results["bad-model"].error.error.message
    assert results["bad-field"].error.error.type == "invalid_request_error"
    assert "tools" in results["bad-field"].error.error.message
    assert "stream" in results["streamed"].error.error.message
    stopped = results["ok-stop"].message
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", ".")
    assert "." not in stopped.content[0].text
    assert results["bad-top-k"].error.error.type == "invalid_request_error"
    assert "top_k: cannot go to model 'gpt-4o-mini'" in results["bad-top-k"].error.error.message

    db = Database(stack.settings.database_url_or_default)
    with db.session() as session:
        job = session.get(Job, "job_" + batch.id.removeprefix("msgbatch_"))
        assert (job.surface, job.feature, job.n_total) == ("anthropic", "chatbot", 3)
        assert len(job.surface_meta["errors"]) == 4
    db.dispose()


def test_whole_create_refusals(stack: Stack):
    with an(stack) as client:
        with pytest.raises(anthropic.BadRequestError, match="duplicate custom_id"):
            client.messages.batches.create(requests=[req("a", "x"), req("a", "y")])
        with pytest.raises(anthropic.BadRequestError, match="none of the 1 requests is valid"):
            client.messages.batches.create(requests=[req("a", "x", model="nope")])
        with pytest.raises(anthropic.UnprocessableEntityError, match="requests"):
            client.messages.batches.create(requests=[])  # the API's 422 for a body's shape
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve("msgbatch_doesnotexist")
        with pytest.raises(anthropic.NotFoundError):
            client.messages.batches.retrieve("job_doesnotexist")


def test_list_pages_newest_first(stack: Stack):
    with an(stack, key=CONTENT) as client:
        made = [
            client.messages.batches.create(requests=[req("only", f"List {i}")]).id
            for i in range(3)
        ]
        first = client.messages.batches.list(limit=1)
        assert [b.id for b in first.data] == [made[-1]] and first.has_more
        assert first.first_id == first.last_id == made[-1]
        seen = [b.id for b in client.messages.batches.list(limit=1)]  # auto-paging, after_id
        assert seen[:3] == made[::-1] and len(seen) == len(set(seen))
        newer = client.messages.batches.list(before_id=made[0], limit=1)
        assert [b.id for b in newer.data] == [made[1]] and newer.has_more


def test_cancel_a_bigger_batch_and_delete_only_once_ended(stack: Stack):
    sim = stack.env["BROKER_SIMULATOR_URL"]
    before = httpx.get(f"{sim}/_sim/config").json()
    httpx.post(f"{sim}/_sim/config", json={"latency_ms": 300}).raise_for_status()
    try:
        with an(stack) as client:
            batches = client.messages.batches
            batch = batches.create(
                requests=[req(f"c-{i}", f"Cancel me {i}", max_tokens=16) for i in range(300)]
            )
            with pytest.raises(anthropic.BadRequestError, match="cancel it first"):
                batches.delete(batch.id)
            cancelling = batches.cancel(batch.id)
            assert cancelling.processing_status in ("canceling", "ended")
            assert cancelling.cancel_initiated_at is not None
            ended = wait_ended(batches, batch.id)
            counts = ended.request_counts
            assert ended.processing_status == "ended"
            assert sum(counts.model_dump().values()) == 300 and counts.processing == 0
            assert counts.canceled > 0
            kinds = [r.result.type for r in batches.results(batch.id)]
            assert len(kinds) == 300 and kinds.count("canceled") == counts.canceled

            deleted = batches.delete(batch.id)
            assert (deleted.id, deleted.type) == (batch.id, "message_batch_deleted")
            with pytest.raises(anthropic.NotFoundError):
                batches.retrieve(batch.id)
            assert batch.id not in [b.id for b in batches.list(limit=100).data]
    finally:
        httpx.post(
            f"{sim}/_sim/config", json={"latency_ms": before.get("latency_ms", 0)}
        ).raise_for_status()


def test_the_beta_path(stack: Stack):
    with an(stack) as client:
        batches = client.beta.messages.batches
        batch = batches.create(requests=[req("beta-1", "Beta path")])
        assert wait_ended(batches, batch.id).processing_status == "ended"
        assert batch.id in [b.id for b in batches.list(limit=20).data]
        [line] = list(batches.results(batch.id))
        assert line.custom_id == "beta-1" and line.result.type == "succeeded"


def test_auth_another_team_and_idempotency(stack: Stack):
    with an(stack, key="ib-not-a-key") as stranger:
        with pytest.raises(anthropic.AuthenticationError):
            stranger.messages.batches.list()
    with an(stack) as client, an(stack, key=CONTENT) as other:
        key = {"Idempotency-Key": uuid.uuid4().hex}
        body = [req("idem", "Only once")]
        one = client.messages.batches.create(requests=body, extra_headers=key)
        again = client.messages.batches.create(requests=body, extra_headers=key)
        assert one.id == again.id
        assert client.messages.batches.create(requests=body).id != one.id
        wait_ended(client.messages.batches, one.id)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.retrieve(one.id)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.cancel(one.id)
        with pytest.raises(anthropic.NotFoundError):
            other.messages.batches.delete(one.id)
        response = httpx.get(
            f"{stack.api_url}/v1/messages/batches/{one.id}/results", headers={"x-api-key": CONTENT}
        )
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"
        assert one.id not in [b.id for b in other.messages.batches.list(limit=100).data]
