"""``team_api_keys``: teams' API keys made at run time, kept as their sha256.

A key is made here (:func:`new_key`), shown to the caller once, and from then on only its
digest and its first characters (``prefix``) exist. Revoking sets ``revoked_at``; the row stays,
so a listing still shows when the key was made, last used and revoked. Run the writes through
:meth:`Database.write`: each is one conditional transition, safe to retry.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from broker.config.broker_toml import hash_api_key
from broker.store.models import TeamApiKey, utcnow

PREFIX_CHARS = 10  # "ib-" and 7 random characters: enough to tell keys apart, nothing to use
#: ``last_used_at`` is written at most this often per key, so authenticating stays a read.
LAST_USED_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: ``key`` exists only in this object and the response that shows it."""

    row: TeamApiKey
    key: str


class KeyNotFound(LookupError):
    """No key with this id."""


class KeyRevoked(Exception):
    """The key was already revoked (e.g. rotated out): it cannot be rotated again."""

    def __init__(self, row: TeamApiKey) -> None:
        self.row = row
        super().__init__(f"key {row.id} was revoked at {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC")


def new_key(team_id: str) -> NewKey:
    """A fresh key for ``team_id`` and the row that records it (not yet added to a session)."""
    key = "ib-" + secrets.token_urlsafe(32)
    row = TeamApiKey(
        id=f"key_{secrets.token_hex(8)}",
        team_id=team_id,
        prefix=key[:PREFIX_CHARS],
        sha256=hash_api_key(key),
        created_at=utcnow(),
    )
    return NewKey(row=row, key=key)


def create(session: Session, made: NewKey) -> TeamApiKey:
    """Record ``made`` (from :func:`new_key`, made outside the retried work, so a retry records
    the same key)."""
    row = session.get(TeamApiKey, made.row.id)
    if row is None:
        row = TeamApiKey(
            id=made.row.id,
            team_id=made.row.team_id,
            prefix=made.row.prefix,
            sha256=made.row.sha256,
            created_at=made.row.created_at,
        )
        session.add(row)
        session.flush()
    return row


def list_keys(session: Session, team_id: str) -> list[TeamApiKey]:
    """The team's keys, revoked ones included, oldest first."""
    query = (
        select(TeamApiKey)
        .where(TeamApiKey.team_id == team_id)
        .order_by(TeamApiKey.created_at, TeamApiKey.id)
    )
    return list(session.scalars(query))


def get(session: Session, key_id: str) -> TeamApiKey:
    row = session.get(TeamApiKey, key_id)
    if row is None:
        raise KeyNotFound(key_id)
    return row


def revoke(session: Session, key_id: str) -> TeamApiKey:
    """Revoke the key now; revoking a revoked key keeps its first ``revoked_at``."""
    row = get(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        session.flush()
    return row


def rotate(session: Session, key_id: str, made: NewKey) -> tuple[TeamApiKey, TeamApiKey]:
    """Revoke ``key_id`` at once and record ``made`` for the same team, in one transaction:
    (old row, new row). ``made`` must have been made for the old key's team."""
    old = get(session, key_id)
    if session.get(TeamApiKey, made.row.id) is not None:  # a retry after a lost commit
        return old, create(session, made)
    revoked = session.execute(
        update(TeamApiKey)
        .where(TeamApiKey.id == key_id, TeamApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if revoked.rowcount != 1:
        session.refresh(old)
        raise KeyRevoked(old)
    session.refresh(old)
    return old, create(session, made)


def active_team(session: Session, digest: str) -> tuple[str, str, datetime | None] | None:
    """(key id, team id, last used) of the unrevoked key with this sha256, or None."""
    row = session.execute(
        select(TeamApiKey.id, TeamApiKey.team_id, TeamApiKey.last_used_at).where(
            TeamApiKey.sha256 == digest, TeamApiKey.revoked_at.is_(None)
        )
    ).first()
    return None if row is None else (row.id, row.team_id, row.last_used_at)


def touch(session: Session, key_id: str) -> None:
    """Set ``last_used_at`` to now unless it was set less than :data:`LAST_USED_EVERY` ago."""
    now = utcnow()
    session.execute(
        update(TeamApiKey)
        .where(
            TeamApiKey.id == key_id,
            or_(TeamApiKey.last_used_at.is_(None), TeamApiKey.last_used_at < now - LAST_USED_EVERY),
        )
        .values(last_used_at=now)
    )
