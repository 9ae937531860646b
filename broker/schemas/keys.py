"""Response models of the admin key endpoints (``/v1/admin/teams/{team}/keys``,
``/v1/admin/keys/{id}``), shared by the server and ``inference-broker keys``.

A listing carries a key's id and its first characters, never the key or its hash; only the
answer to creating or rotating a key carries the key itself, once.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field


class ApiKeyOut(BaseModel):
    id: str = Field(description="The key's id, for rotate and revoke.")
    team: str
    prefix: str = Field(description="The key's first characters, to tell it apart.")
    created_at: datetime
    revoked_at: datetime | None = None
    last_used_at: datetime | None = Field(
        default=None, description="When it last authenticated a request, to within a minute."
    )


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]


class ApiKeyCreated(ApiKeyOut):
    """A key just made: ``key`` is shown this once and cannot be read back."""

    key: str = Field(description="The API key itself: give it to the team; it is not kept.")
    replaces: str | None = Field(
        default=None, description="On rotation: the id of the key revoked in its place."
    )
