"""Bearer API keys → teams, or the operators' admin key. Keys are compared by their sha256;
plain keys are never stored.

A team's key is one of broker.toml's (``teams[].api_key_sha256``) or an unrevoked row of
``team_api_keys`` (made at run time by ``/v1/admin/teams/{team}/keys``) of a team that is still
in broker.toml. The row is looked up by its digest on every request (one indexed query, no
cache), so a revocation holds from the next request on.
"""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from fastapi.security.utils import get_authorization_scheme_param
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from broker.api.errors import store_errors
from broker.api.resources import resources_of
from broker.config.broker_toml import BrokerConfig, TeamConfig, hash_api_key
from broker.errors import AuthenticationFailed, Forbidden, NotFound
from broker.schemas.http import ErrorBody
from broker.store import api_keys
from broker.store.models import utcnow

log = logging.getLogger(__name__)


def _bearer(request: Request, whose: str, *, x_api_key: bool = False) -> str:
    scheme, key = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() == "bearer" and key:
        return key
    if x_api_key and request.headers.get("x-api-key"):  # the Anthropic SDK's header
        return request.headers["x-api-key"]
    also = " or 'x-api-key: <key>'" if x_api_key else ""
    raise AuthenticationFailed(f"send {whose} as 'Authorization: Bearer <key>'{also}")


def team_of_key(request: Request, digest: str) -> TeamConfig | None:
    """The team whose key has this sha256: in broker.toml, else an unrevoked run-time key."""
    resources = resources_of(request)
    config: BrokerConfig = resources.config
    team = config.team_by_key_hash(digest)
    if team is not None:
        return team
    with store_errors(), resources.db.session() as session:
        found = api_keys.active_team(session, digest)
    if found is None:
        return None
    key_id, team_id, last_used = found
    if not config.has_team(team_id):  # the team left broker.toml: its keys go with it
        return None
    if last_used is None or last_used < utcnow() - api_keys.LAST_USED_EVERY:
        _touch(resources.db, key_id)
    return config.team(team_id)


def _touch(db, key_id: str) -> None:
    """Record the use (at most once a minute per key); failing to is no reason to refuse."""
    try:
        with db.session() as session:
            api_keys.touch(session, key_id)
    except SQLAlchemyError as exc:
        log.warning("could not record the use of key %s: %s", key_id, type(exc).__name__)


async def authenticate(request: Request) -> TeamConfig:
    """FastAPI dependency: the team whose key is in ``Authorization: Bearer ...`` (or, as the
    Anthropic SDK sends it, ``x-api-key``).

    The key's digest is left in ``request.state.api_key_sha256`` for per-key limits. Async: a
    key from broker.toml is found without I/O, on the event loop (FastAPI runs a plain ``def``
    dependency in a worker thread, a hop on every request); only a run-time key's lookup in
    the database goes to a thread.
    """
    digest = hash_api_key(_bearer(request, "your team's API key", x_api_key=True))
    team = resources_of(request).config.team_by_key_hash(digest)
    if team is None:
        team = await run_in_threadpool(team_of_key, request, digest)
    if team is None:
        raise AuthenticationFailed("unknown API key")
    request.state.api_key_sha256 = digest
    return team


def authenticate_admin(request: Request) -> None:
    """FastAPI dependency for ``/v1/admin``: the caller holds the operators' key.

    A team's key is refused with 403, not 401: the key is good, it is the wrong kind, and the
    message says which one is needed. The digests are compared in constant time, so response
    timing tells nothing about how close a guess was.
    """
    config: BrokerConfig = resources_of(request).config
    if config.admin_api_key_sha256 is None:
        raise Forbidden(
            "the admin API is disabled: set admin_api_key_sha256 in broker.toml "
            "(`inference-broker keygen` makes a key and its hash) and restart the API"
        )
    digest = hash_api_key(_bearer(request, "the admin key"))
    if hmac.compare_digest(digest, config.admin_api_key_sha256):
        return
    if team_of_key(request, digest) is not None:
        raise Forbidden("admin endpoints need the admin key; this is a team's API key")
    raise AuthenticationFailed("unknown API key")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is asking, on endpoints both teams and operators use: a team, or the operators."""

    team: TeamConfig | None  # None: the admin key

    def team_filter(self, config: BrokerConfig, asked: str | None) -> str | None:
        """The team a read is limited to (None: every team) when the caller asks for ``asked``.

        A team always gets its own; naming another team is 404 with the same words whether it
        exists or not, as another team's job is. Operators get what they ask for, and a team
        not in broker.toml is 404 naming the known ones, as in ``/v1/admin``, so a typo is not
        mistaken for a team that spent nothing.
        """
        if self.team is not None:
            if asked is not None and asked != self.team.id:
                raise NotFound(f"no team {asked!r} for this key")
            return self.team.id
        if asked is not None and not config.has_team(asked):
            known = ", ".join(sorted(t.id for t in config.teams)) or "none"
            raise NotFound(f"no team {asked!r} in broker.toml (known: {known})")
        return asked


def authenticate_caller(request: Request) -> Caller:
    """FastAPI dependency taking either a team's key or the admin key (``/v1/reports``).

    The admin digest is compared in constant time, as in :func:`authenticate_admin`; with no
    admin key configured only team keys get in.
    """
    config: BrokerConfig = resources_of(request).config
    return _caller(request, [config.admin_api_key_sha256], "your team's API key or the admin key")


def authenticate_scraper(request: Request) -> Caller:
    """FastAPI dependency for ``/metrics``: the metrics key (Prometheus's) or the admin key
    reads every series, a team's key its own team's."""
    config: BrokerConfig = resources_of(request).config
    operators = [config.metrics_api_key_sha256, config.admin_api_key_sha256]
    return _caller(request, operators, "the metrics key, the admin key or your team's API key")


def _caller(request: Request, operators: list[str | None], wanted: str) -> Caller:
    digest = hash_api_key(_bearer(request, wanted))
    for operator in operators:
        if operator is not None and hmac.compare_digest(digest, operator):
            return Caller(team=None)
    team = team_of_key(request, digest)
    if team is None:
        raise AuthenticationFailed(f"unknown API key (send {wanted})")
    return Caller(team=team)


def admin_router(*statuses: int) -> APIRouter:
    """A router under ``/v1/admin`` that only the admin key passes, its error answers (401, 403,
    503 and ``statuses``) documented in the OpenAPI schema."""
    return APIRouter(
        prefix="/v1/admin",
        tags=["admin"],
        dependencies=[Depends(authenticate_admin)],
        responses={code: {"model": ErrorBody} for code in sorted({401, 403, 503, *statuses})},
    )
