"""The Celery transport: kombu's Redis transport with one redis-py client per channel, on a
real Redis. Messages, the ``unacked`` bookkeeping and acks work as kombu's own."""

from __future__ import annotations

import redis
from kombu import Queue

from broker.config.settings import Settings
from workers.celery_app import create_celery_app
from workers.transport import Channel, Transport


def test_the_app_uses_it_and_a_channel_builds_one_client(settings: Settings, redis_client):
    app = create_celery_app(settings)
    with app.connection_for_write() as connection:
        assert isinstance(connection.transport, Transport)
        channel = connection.default_channel
        assert isinstance(channel, Channel)
        with channel.conn_or_acquire() as first, channel.conn_or_acquire() as second:
            assert first is second and first.connection_pool is channel.pool
        given = redis.Redis.from_url(settings.redis_url)
        with channel.conn_or_acquire(given) as client:
            assert client is given  # a caller's own client is used as it is
        given.close()
        channel._pool = None  # kombu drops its pool after a connection error
        with channel.conn_or_acquire() as after:
            assert after is not first and after.connection_pool is channel.pool


def test_a_message_is_delivered_held_as_unacked_and_acked(settings: Settings, redis_client):
    app = create_celery_app(settings)
    with app.connection_for_write() as connection:
        queue = connection.SimpleQueue(Queue("transport-test", routing_key="transport-test"))
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        assert message.payload == {"n": 1}
        assert redis_client.hlen("unacked") == 1  # kombu's visibility bookkeeping
        message.ack()
        assert redis_client.hlen("unacked") == 0
        queue.close()
