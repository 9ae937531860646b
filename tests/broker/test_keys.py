"""Teams' run-time API keys (``/v1/admin/.../keys`` and ``inference-broker keys``) and the API's
limits on what one key may send: body size and submissions per minute. Real Redis and
databases; the CLI against a real API process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from broker.api import create_app
from broker.config.settings import Settings
from broker.local.processes import start_api
from broker.local.stack import settings_env
from broker.store.models import TeamApiKey

ADMIN = {"Authorization": "Bearer ib-dev-admin"}
PRODUCT = {"Authorization": "Bearer ib-dev-product"}
CLI = [sys.executable, "-m", "broker.cli"]


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def batch(n: int = 1, content: str = "hi") -> dict:
    message = {"role": "user", "content": content}
    return {
        "feature": "search",
        "requests": [
            {"custom_id": f"r{i}", "model": "gpt-4o-mini", "max_tokens": 8, "messages": [message]}
            for i in range(n)
        ],
    }


@pytest.fixture
def api(settings: Settings, redis_client) -> TestClient:
    with TestClient(create_app(settings)) as client:
        yield client


# --- the admin endpoints -------------------------------------------------------------------------


def test_a_created_key_is_shown_once_and_works_at_once(api, db):
    resp = api.post("/v1/admin/teams/product/keys", headers=ADMIN)
    assert resp.status_code == 201, resp.text
    made = resp.json()
    assert made["id"].startswith("key_") and made["team"] == "product"
    assert made["key"].startswith("ib-") and made["prefix"] == made["key"][:10]
    assert made["revoked_at"] is None and made["replaces"] is None
    job = api.post("/v1/jobs", json=batch(), headers=bearer(made["key"]))
    assert job.status_code == 201 and job.json()["team"] == "product"
    listed = api.get("/v1/admin/teams/product/keys", headers=ADMIN).json()["keys"]
    mine = next(k for k in listed if k["id"] == made["id"])
    assert mine["last_used_at"] is not None, "recorded on first use"
    with db.session() as s:
        first_use = s.get(TeamApiKey, made["id"]).last_used_at
    api.get("/v1/jobs", headers=bearer(made["key"]))
    with db.session() as s:
        assert s.get(TeamApiKey, made["id"]).last_used_at == first_use, "at most once a minute"


def test_unknown_teams_and_keys_are_404(api):
    for method, path in [
        ("POST", "/v1/admin/teams/nope/keys"),
        ("GET", "/v1/admin/teams/nope/keys"),
    ]:
        resp = api.request(method, path, headers=ADMIN)
        assert resp.status_code == 404 and "content, platform, product" in resp.text
    for method, path in [
        ("POST", "/v1/admin/keys/key_nope/rotate"),
        ("DELETE", "/v1/admin/keys/key_nope"),
    ]:
        resp = api.request(method, path, headers=ADMIN)
        assert resp.status_code == 404 and "'key_nope'" in resp.json()["error"]["message"]


def test_a_key_id_with_a_nul_character_is_422(api):
    """PostgreSQL refuses a NUL in a query: these were 503s, "the database is unreachable"."""
    for method, path in [
        ("POST", "/v1/admin/keys/key_%00/rotate"),
        ("DELETE", "/v1/admin/keys/key_%00"),
    ]:
        resp = api.request(method, path, headers=ADMIN)
        assert resp.status_code == 422, resp.text
        assert resp.json()["error"]["field"] == "key_id"


def test_revoking_twice_keeps_the_first_revocation(api):
    made = api.post("/v1/admin/teams/content/keys", headers=ADMIN).json()
    first = api.delete(f"/v1/admin/keys/{made['id']}", headers=ADMIN).json()
    second = api.delete(f"/v1/admin/keys/{made['id']}", headers=ADMIN)
    assert second.status_code == 200 and second.json()["revoked_at"] == first["revoked_at"]


# --- limits ------------------------------------------------------------------------------------


@pytest.fixture
def small_api(settings: Settings, redis_client) -> TestClient:
    limited = settings.model_copy(update={"max_body_bytes": 2000, "submissions_per_minute": 3})
    with TestClient(create_app(limited)) as client:
        yield client


def test_a_body_over_max_body_bytes_is_413_naming_the_limit(small_api):
    big = batch(1, content="x" * 3000)
    resp = small_api.post("/v1/jobs", json=big, headers=PRODUCT)
    assert resp.status_code == 413
    error = resp.json()["error"]
    assert error["type"] == "invalid_request" and error["field"] == "body"
    assert "max_body_bytes" in error["message"] and "2,000 bytes" in error["message"]

    def chunks():  # no Content-Length: counted while read
        yield b'{"feature": "search", "requests": ['
        for _ in range(30):
            yield b'{"custom_id": "' + b"y" * 100 + b'"},'
        yield b"]}"

    headers = {**PRODUCT, "Content-Type": "application/json"}
    chunked = small_api.post("/v1/jobs", content=chunks(), headers=headers)
    assert chunked.status_code == 413 and chunked.json()["error"]["field"] == "body"
    assert small_api.post("/v1/jobs", json=batch(), headers=PRODUCT).status_code == 201


def test_submissions_per_minute_are_limited_per_key(small_api):
    other = small_api.post("/v1/admin/teams/product/keys", headers=ADMIN).json()["key"]
    for _ in range(3):
        assert small_api.post("/v1/jobs", json=batch(), headers=PRODUCT).status_code == 201
    refused = small_api.post("/v1/jobs", json=batch(), headers=PRODUCT)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["type"] == "rate_limited" and "3 submissions per minute" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert small_api.get("/v1/jobs", headers=PRODUCT).status_code == 200, "reads are not counted"
    resp = small_api.post("/v1/jobs", json=batch(), headers=bearer(other))
    assert resp.status_code == 201, "another key of the same team has its own allowance"


def test_max_tokens_over_the_models_ceiling_is_400_naming_it(api):
    body = batch(2)
    body["requests"][1]["max_tokens"] = 10**6
    resp = api.post("/v1/jobs", json=body, headers=PRODUCT)
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["field"] == "requests[1].max_tokens" and "limit of 16384" in error["message"]


# --- the CLI ------------------------------------------------------------------------------------


def test_keys_create_list_rotate_revoke_against_a_running_api(settings, redis_client, tmp_path):
    proc, url = start_api(settings_env(settings), tmp_path / "api.log")
    try:

        def keys(*args: str, key: str = "ib-dev-admin") -> subprocess.CompletedProcess:
            env = {**os.environ, "BROKER_URL": url, "BROKER_ADMIN_KEY": key}
            return subprocess.run(
                [*CLI, "keys", *args],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )

        created = keys("create", "platform")
        assert created.returncode == 0, created.stderr
        key = created.stdout.split("shown once): ")[1].split()[0]
        key_id = created.stdout.split("id: ")[1].split()[0]
        assert key.startswith("ib-") and key_id.startswith("key_")

        listed = keys("list", "platform")
        assert listed.returncode == 0, listed.stderr
        assert key_id in listed.stdout and key[:10] in listed.stdout and key not in listed.stdout

        rotated = keys("rotate", key_id, "--url", url)
        assert rotated.returncode == 0, rotated.stderr
        new_id = rotated.stdout.split("id: ")[1].split()[0]
        assert f"revoked: {key_id}" in rotated.stdout and new_id != key_id

        revoked = keys("revoke", new_id)
        assert revoked.returncode == 0 and f"{new_id} (" in revoked.stdout, revoked.stderr

        refused = keys("list", "platform", key="ib-dev-platform")
        assert refused.returncode == 1 and "admin key" in refused.stderr
        missing = keys("revoke", "key_nope")
        assert missing.returncode == 1 and "key_nope" in missing.stderr
    finally:
        proc.stop()
