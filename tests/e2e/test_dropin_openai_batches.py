"""The official OpenAI SDK's Files and Batches APIs, unchanged and strictly validating, against
a real stack: upload, batch, poll, read output and error files, list, cancel, delete."""

from __future__ import annotations

import base64
import json
import time
import uuid

import openai
import pytest
from openai.types import CreateEmbeddingResponse

from broker.local.stack import Stack

pytestmark = pytest.mark.e2e

PRODUCT, CONTENT = "ib-dev-product", "ib-dev-content"
URL = "/v1/chat/completions"


def oa(stack: Stack, key: str = PRODUCT) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{stack.api_url}/v1", api_key=key, max_retries=0, _strict_response_validation=True
    )


def line(custom_id: str, prompt: str, model: str = "gpt-4o-mini") -> str:
    body = {"model": model, "max_tokens": 32, "messages": [{"role": "user", "content": prompt}]}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": URL, "body": body})


def upload(client: openai.OpenAI, lines: list[str], name: str = "in.jsonl"):
    return client.files.create(file=(name, ("\n".join(lines) + "\n").encode()), purpose="batch")


def wait(client: openai.OpenAI, batch_id: str, done=("completed", "cancelled", "failed")):
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if batch.status in done:
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} still {batch.status}")


def test_a_batch_runs_its_good_lines_and_reports_the_bad_ones(stack: Stack):
    tag = uuid.uuid4().hex[:8]
    lines = [
        line("a", f"What is two plus two? {tag}"),
        "{this is not json",
        line("b", f"Name a colour. {tag}"),
        line("c", f"Name a fruit. {tag}", model="no-such-model"),
    ]
    with oa(stack) as client:
        file = upload(client, lines)
        assert (file.object, file.purpose, file.status, file.bytes) == (
            "file",
            "batch",
            "processed",
            len(("\n".join(lines) + "\n").encode()),
        )
        assert file.expires_at == file.created_at + 30 * 86400
        assert client.files.retrieve(file.id).id == file.id
        assert client.files.content(file.id).text.splitlines() == lines

        batch = client.batches.create(
            input_file_id=file.id,
            endpoint=URL,
            completion_window="24h",
            metadata={"feature": "summarization", "run": tag},
        )
        assert batch.status == "in_progress" and batch.metadata["run"] == tag
        assert batch.output_file_id is None and batch.request_counts.total == 4
        batch = wait(client, batch.id)
        assert batch.status == "completed"
        assert (
            batch.request_counts.total,
            batch.request_counts.completed,
            batch.request_counts.failed,
        ) == (4, 2, 2)
        assert batch.completed_at and batch.usage.total_tokens > 0

        out = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
        assert sorted(o["custom_id"] for o in out) == ["a", "b"]
        for o in out:
            assert o["response"]["status_code"] == 200 and o["error"] is None
            assert o["response"]["body"]["object"] == "chat.completion"
            assert o["response"]["body"]["choices"][0]["message"]["content"]
        error_text = client.files.content(batch.error_file_id).text
        errors = [json.loads(x) for x in error_text.splitlines()]
        assert sorted(e["custom_id"] or "" for e in errors) == ["", "c"]
        for e in errors:
            assert e["response"]["status_code"] == 400
            assert e["response"]["body"]["error"]["message"].startswith("line ")
        unknown = next(e for e in errors if e["custom_id"] == "c")
        assert "no-such-model" in unknown["response"]["body"]["error"]["message"]

        meta = client.files.retrieve(batch.output_file_id)
        assert meta.purpose == "batch_output" and meta.bytes > 0

        with pytest.raises(openai.NotFoundError):  # another team's
            oa(stack, CONTENT).batches.retrieve(batch.id)
        with pytest.raises(openai.NotFoundError):
            oa(stack, CONTENT).files.content(batch.output_file_id)
        with pytest.raises(openai.NotFoundError):
            oa(stack, CONTENT).files.retrieve(file.id)


def test_an_embeddings_batch_writes_embedding_bodies(stack: Stack):
    tag = uuid.uuid4().hex[:8]
    url, model = "/v1/embeddings", "text-embedding-3-small"

    def embed(custom_id: str, body: dict) -> str:
        return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})

    lines = [
        embed("f", {"model": model, "input": [f"one {tag}", f"two {tag}"], "dimensions": 32}),
        embed("b", {"model": model, "input": f"three {tag}", "encoding_format": "base64"}),
        embed("x", {"model": "gpt-4o-mini", "input": f"four {tag}"}),
    ]
    with oa(stack) as client:
        batch = client.batches.create(
            input_file_id=upload(client, lines).id, endpoint=url, completion_window="24h"
        )
        assert batch.endpoint == url
        batch = wait(client, batch.id)
        assert batch.status == "completed"
        assert (batch.request_counts.completed, batch.request_counts.failed) == (2, 1)
        out = client.files.content(batch.output_file_id).text.splitlines()
        errors = client.files.content(batch.error_file_id).text.splitlines()
    lines_out = {o["custom_id"]: o for o in map(json.loads, out)}
    assert all(o["response"]["status_code"] == 200 for o in lines_out.values())
    assert all(o["error"] is None for o in lines_out.values())
    floats = CreateEmbeddingResponse.model_validate(lines_out["f"]["response"]["body"], strict=True)
    assert [len(d.embedding) for d in floats.data] == [32, 32]
    assert floats.usage.prompt_tokens > 0 and floats.model == model
    [encoded] = lines_out["b"]["response"]["body"]["data"]  # base64, as that line asked
    assert (encoded["object"], encoded["index"]) == ("embedding", 0)
    assert len(base64.b64decode(encoded["embedding"])) == 4 * 1536
    [error] = [json.loads(e) for e in errors]
    assert error["custom_id"] == "x" and error["response"]["status_code"] == 400
    assert (
        "embedding models: text-embedding-3-small"
        in (error["response"]["body"]["error"]["message"])
    )


def test_an_embeddings_batch_over_fifty_thousand_inputs_fails_before_it_runs(stack: Stack):
    url, model = "/v1/embeddings", "text-embedding-3-small"
    body = {"model": model, "input": [f"text {i}" for i in range(2048)]}
    lines = [json.dumps({"custom_id": f"e{n}", "method": "POST", "url": url, "body": body})
             for n in range(25)]  # fmt: skip
    with oa(stack) as client:
        batch = client.batches.create(
            input_file_id=upload(client, lines).id, endpoint=url, completion_window="24h"
        )
    assert batch.status == "failed" and batch.request_counts.completed == 0
    [error] = batch.errors.data
    assert error.code == "too_many_inputs" and "51,200 embedding inputs" in error.message


def test_a_file_with_no_good_line_makes_a_failed_batch(stack: Stack):
    with oa(stack) as client:
        file = upload(client, ["nope", line("x", "hi", model="no-such-model")])
        batch = client.batches.create(input_file_id=file.id, endpoint=URL, completion_window="24h")
        assert batch.status == "failed" and batch.errors is not None
        assert [e.line for e in batch.errors.data] == [1, 2]
        assert client.batches.retrieve(batch.id).status == "failed"


def test_bad_creates_are_400s(stack: Stack):
    with oa(stack) as client:
        file = upload(client, [line("a", "hi")])
        with pytest.raises(openai.BadRequestError, match="/v1/chat/completions and /v1/embed"):
            client.batches.create(
                input_file_id=file.id, endpoint="/v1/completions", completion_window="24h"
            )
        with pytest.raises(openai.BadRequestError, match="purpose"):
            client.files.create(file=("a.jsonl", b"{}\n"), purpose="fine-tune")
        with pytest.raises(openai.NotFoundError):
            client.batches.create(input_file_id="file-nope", endpoint=URL, completion_window="24h")
    with pytest.raises(openai.AuthenticationError):
        oa(stack, "not-a-key").files.list()


def test_idempotency_key_returns_the_same_batch(stack: Stack):
    key = uuid.uuid4().hex
    with oa(stack) as client:
        file = upload(client, [line("a", f"Say hello {key}")])
        ids = {
            client.batches.create(
                input_file_id=file.id,
                endpoint=URL,
                completion_window="24h",
                extra_headers={"Idempotency-Key": key},
            ).id
            for _ in range(3)
        }
        assert len(ids) == 1


def test_cancel_a_batch(stack: Stack):
    tag = uuid.uuid4().hex[:8]
    with oa(stack) as client:
        file = upload(client, [line(f"r{i}", f"Summarise item {i} {tag}") for i in range(300)])
        batch = client.batches.create(input_file_id=file.id, endpoint=URL, completion_window="24h")
        cancelled = client.batches.cancel(batch.id)
        assert cancelled.status in ("cancelling", "cancelled") and cancelled.cancelling_at
        batch = wait(client, batch.id, done=("cancelled",))
        counts = batch.request_counts
        assert counts.total == 300 and counts.completed + counts.failed == 300
        assert counts.failed > 0  # cancelled before the scheduler got through 300
        errors = client.files.content(batch.error_file_id).text.splitlines()
        assert len(errors) == counts.failed
        assert json.loads(errors[0])["error"]["code"] == "batch_cancelled"


def test_list_page_and_delete(stack: Stack):
    with oa(stack, CONTENT) as client:
        made = [upload(client, [line("a", f"list {i}")], name=f"f{i}.jsonl").id for i in range(3)]
        page = client.files.list(limit=2)
        assert len(page.data) == 2 and page.has_more
        listed = [f.id for f in client.files.list(limit=2)]  # the SDK pages through
        assert set(made) <= set(listed)
        for file_id in made:
            client.batches.create(input_file_id=file_id, endpoint=URL, completion_window="24h")
        batches = [b.id for b in client.batches.list(limit=2)]
        assert len(batches) == len(set(batches)) >= 3
        assert client.batches.list(limit=2).has_more

        deleted = client.files.delete(made[0])
        assert (deleted.id, deleted.deleted) == (made[0], True)
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(made[0])
        with pytest.raises(openai.NotFoundError):
            oa(stack).files.delete(made[1])  # another team's
