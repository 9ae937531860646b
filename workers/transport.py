"""kombu's Redis transport, building one redis-py client per channel instead of one per call.

kombu's Redis channel hands every call that needs a client (``conn_or_acquire``: the ``unacked``
bookkeeping of each delivered message and of each ack, a publish outside a batch) a *new*
``redis.Redis`` over its connection pool. Building one parses its options and its table of
reply callbacks: in a worker pool draining a batch that was a seventeenth of the process's
time, for an object that only borrows a connection from the same pool. This channel keeps one
client and builds another only when kombu has replaced the pool (after a connection error).
A redis-py client is safe to share between threads: each command takes its own connection from
the pool for its duration. Everything else, the message layout included, is kombu's.

Celery takes it as ``broker_transport`` (:func:`workers.celery_app.create_celery_app`); the
broker URL still says where Redis is (``redis://``, ``rediss://``, ``unix://``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport"]


class Channel(kombu_redis.Channel):
    _shared_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client: redis.Redis | None = None) -> Iterator[redis.Redis]:
        if client:
            yield client
            return
        shared = self._shared_client
        if shared is None or shared.connection_pool is not self.pool:
            shared = self._shared_client = self._create_client()
        yield shared


class Transport(kombu_redis.Transport):
    Channel = Channel
