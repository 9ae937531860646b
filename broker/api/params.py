"""Path and query parameters that reach the database, shared by the routes.

Ids are only looked up, never parsed, but a NUL character cannot go into a PostgreSQL query at
all (psycopg refuses it): such an id is refused as a 422 naming the parameter, as a body field
with one is, rather than failing in the driver. ``after`` is a request's position in its batch,
an ``INTEGER`` column: past 2**31 - 1 it could not be compared on PostgreSQL (nor past 2**63 - 1
on SQLite).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import StringConstraints

from broker.schemas.http import NulFree

MAX_SEQ = 2**31 - 1

JobId = Annotated[NulFree, Path()]
KeyId = Annotated[NulFree, Path()]
BeforeJob = Annotated[
    # the length first: after a validator it would be checked as "items after validation"
    Annotated[str, StringConstraints(max_length=64), *NulFree.__metadata__] | None,
    Query(description="The last job id of the previous page."),
]
AfterSeq = Annotated[
    int,
    Query(ge=-1, le=MAX_SEQ, description="The last position of the previous page (next_after)."),
]
