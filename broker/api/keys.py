"""``/v1/admin``: teams' API keys made, listed, rotated and revoked at run time.

- ``POST /teams/{team}/keys``: a new key for the team, shown once in the answer (201).
- ``GET /teams/{team}/keys``: the team's keys by id and first characters, revoked ones too.
- ``POST /keys/{id}/rotate``: a new key for the same team (shown once); the old one is revoked
  at once, in the same transaction (no grace period).
- ``DELETE /keys/{id}``: revoke the key; from the next request on it gets 401.

Keys are kept as sha256 (:mod:`broker.store.api_keys`); the admin key and the keys in
broker.toml are not managed here.
"""

from __future__ import annotations

from fastapi import Request

from broker.api.admin import known_team
from broker.api.auth import admin_router
from broker.api.errors import store_errors
from broker.api.params import KeyId
from broker.api.resources import resources_of
from broker.errors import Conflict, NotFound
from broker.schemas.http import ErrorBody
from broker.schemas.keys import ApiKeyCreated, ApiKeyList, ApiKeyOut
from broker.store import api_keys
from broker.store.models import TeamApiKey

router = admin_router(404)


def _out(row: TeamApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=row.id,
        team=row.team_id,
        prefix=row.prefix,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


def _created(row: TeamApiKey, key: str, replaces: str | None = None) -> ApiKeyCreated:
    return ApiKeyCreated(**_out(row).model_dump(), key=key, replaces=replaces)


@router.post("/teams/{team_id}/keys", status_code=201, response_model=ApiKeyCreated)
def create_key(team_id: str, request: Request) -> ApiKeyCreated:
    """A new API key for the team, usable at once. The answer is the only place it appears."""
    known_team(request, team_id)
    made = api_keys.new_key(team_id)
    with store_errors():
        row = resources_of(request).db.write(lambda session: api_keys.create(session, made))
    return _created(row, made.key)


@router.get("/teams/{team_id}/keys", response_model=ApiKeyList)
def list_keys(team_id: str, request: Request) -> ApiKeyList:
    """The team's run-time keys, oldest first, revoked ones included (its broker.toml key is
    not listed)."""
    known_team(request, team_id)
    with store_errors(), resources_of(request).db.session() as session:
        rows = api_keys.list_keys(session, team_id)
    return ApiKeyList(keys=[_out(row) for row in rows])


@router.post(
    "/keys/{key_id}/rotate",
    status_code=201,
    response_model=ApiKeyCreated,
    responses={409: {"model": ErrorBody}},
)
def rotate_key(key_id: KeyId, request: Request) -> ApiKeyCreated:
    """A new key for the same team (shown once); the old one is revoked at once."""
    db = resources_of(request).db
    with store_errors():
        with db.session() as session:
            team_id = _get(session, key_id).team_id
        made = api_keys.new_key(team_id)
        try:
            old, new = db.write(lambda session: api_keys.rotate(session, key_id, made))
        except api_keys.KeyNotFound as exc:
            raise _not_found(key_id) from exc
        except api_keys.KeyRevoked as exc:
            raise Conflict(
                f"{exc}; make a new one with POST /v1/admin/teams/{team_id}/keys"
            ) from exc
    return _created(new, made.key, replaces=old.id)


@router.delete("/keys/{key_id}", response_model=ApiKeyOut)
def revoke_key(key_id: KeyId, request: Request) -> ApiKeyOut:
    """Revoke the key: from the next request on it gets 401. Revoking it again changes nothing."""
    with store_errors():
        try:
            row = resources_of(request).db.write(lambda session: api_keys.revoke(session, key_id))
        except api_keys.KeyNotFound as exc:
            raise _not_found(key_id) from exc
    return _out(row)


def _get(session, key_id: str) -> TeamApiKey:
    try:
        return api_keys.get(session, key_id)
    except api_keys.KeyNotFound as exc:
        raise _not_found(key_id) from exc


def _not_found(key_id: str) -> NotFound:
    return NotFound(
        f"no API key {key_id!r} (keys in broker.toml have no id and are not managed here)"
    )
