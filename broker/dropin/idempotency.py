"""``Idempotency-Key`` on creates: a retried create returns what the first one made.

The SDKs retry a create that timed out or got a 5xx, and send no idempotency key of their own;
a caller that sets ``Idempotency-Key`` (``extra_headers``) gets one batch, however often the
request is retried. The first create's object id is kept in Redis for 24 hours, per team and
surface; a second create with the key while the first is still being written waits for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis

from broker import redis_keys
from broker.errors import Conflict

HEADER = "idempotency-key"
TTL_S = 24 * 3600
_PENDING = b"-"


def once(
    client: redis.Redis,
    team_id: str,
    surface: str,
    key: str | None,
    create: Callable[[], str],
    wait_s: float = 30.0,
) -> tuple[str, bool]:
    """``(object id, created)``: ``create()``'s id the first time, the same id after that."""
    if not key:
        return create(), True
    name = redis_keys.idempotency(team_id, surface, key[:256])
    if client.set(name, _PENDING, nx=True, ex=TTL_S):
        try:
            made = create()
        except BaseException:
            client.delete(name)  # nothing was made: a retry may make it
            raise
        client.set(name, made, ex=TTL_S)
        return made, True
    deadline = time.monotonic() + wait_s
    while (found := client.get(name)) == _PENDING and time.monotonic() < deadline:
        time.sleep(0.05)
    if found is None or found == _PENDING:
        raise Conflict(f"a create with Idempotency-Key {key!r} is still in progress; retry")
    return found.decode(), False
