"""Bearer API keys → teams, or the operators' admin key. Keys are compared by their sha256;
plain keys are never stored."""

from __future__ import annotations

import hmac

from fastapi import Request
from fastapi.security.utils import get_authorization_scheme_param

from broker.config import BrokerConfig, TeamConfig, hash_api_key
from broker.errors import AuthenticationFailed, Forbidden


def _bearer(request: Request, whose: str) -> str:
    scheme, key = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not key:
        raise AuthenticationFailed(f"send {whose} as 'Authorization: Bearer <key>'")
    return key


def authenticate(request: Request) -> TeamConfig:
    """FastAPI dependency: the team whose key is in ``Authorization: Bearer ...``."""
    key = _bearer(request, "your team's API key")
    team = request.app.state.broker.config.team_by_key_hash(hash_api_key(key))
    if team is None:
        raise AuthenticationFailed("unknown API key")
    return team


def authenticate_admin(request: Request) -> None:
    """FastAPI dependency for ``/v1/admin``: the caller holds the operators' key.

    A team's key is refused with 403, not 401: the key is good, it is the wrong kind, and the
    message says which one is needed. The digests are compared in constant time, so response
    timing tells nothing about how close a guess was.
    """
    config: BrokerConfig = request.app.state.broker.config
    if config.admin_api_key_sha256 is None:
        raise Forbidden(
            "the admin API is disabled: set admin_api_key_sha256 in broker.toml "
            "(`inference-broker keygen` makes a key and its hash) and restart the API"
        )
    digest = hash_api_key(_bearer(request, "the admin key"))
    if hmac.compare_digest(digest, config.admin_api_key_sha256):
        return
    if config.team_by_key_hash(digest) is not None:
        raise Forbidden("admin endpoints need the admin key; this is a team's API key")
    raise AuthenticationFailed("unknown API key")
