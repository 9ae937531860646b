"""Bearer API keys → teams. Keys are compared by their sha256; plain keys are never stored."""

from __future__ import annotations

from fastapi import Request
from fastapi.security.utils import get_authorization_scheme_param

from broker.config import TeamConfig, hash_api_key
from broker.errors import AuthenticationFailed


def authenticate(request: Request) -> TeamConfig:
    """FastAPI dependency: the team whose key is in ``Authorization: Bearer ...``."""
    scheme, key = get_authorization_scheme_param(request.headers.get("authorization"))
    if scheme.lower() != "bearer" or not key:
        raise AuthenticationFailed("send your team's API key as 'Authorization: Bearer <key>'")
    team = request.app.state.broker.config.team_by_key_hash(hash_api_key(key))
    if team is None:
        raise AuthenticationFailed("unknown API key")
    return team
