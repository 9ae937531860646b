"""The Celery application shared by the scheduler (which sends) and the worker pools.

Celery only moves work: one queue per provider, filled by the scheduler no further than the
pools can start soon. Priority and fairness are decided in the scheduler, so Celery's emulated
Redis priorities are not used. Results go to the result store, never to a Celery backend.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from typing import Any

import redis
from celery import Celery, signals

from broker.config.settings import Settings
from broker.errors import ConfigError

EXECUTE = "workers.execute"
EXECUTE_MANY = "workers.execute_many"

# Longer than any attempt can take (checked at start), so Redis does not redeliver a task
# still running.
VISIBILITY_TIMEOUT_S = 3600


def create_celery_app(settings: Settings, *, kombu_transport: bool = False) -> Celery:
    """The Celery app of the workers and the scheduler. ``kombu_transport``: kombu's own Redis
    transport instead of :mod:`workers.transport` (for Flower, which reads queue lengths by the
    broker URL's scheme, and for the benchmarks' bare-Celery baseline)."""
    longest = settings.config.longest_attempt_s()
    if longest >= VISIBILITY_TIMEOUT_S:
        # Redis would hand a task still running to another worker.
        raise ConfigError(
            str(settings.config_path or "broker.toml"),
            "providers",
            f"an attempt may take {longest:.0f} s (retries.tries x the longest timeout_s, plus "
            f"the waits between tries), longer than the {VISIBILITY_TIMEOUT_S} s after which "
            "Redis redelivers a task: lower timeout_s or retries.tries",
        )
    # Logging is ours (broker.telemetry.logs: text or JSON, secrets masked): with a receiver on this
    # signal, Celery's worker adds no handler of its own (nor the text one on celery.task),
    # sets no level and leaves stdout alone.
    signals.setup_logging.connect(_logging_is_configured, weak=False)
    if settings.log_format == "json":
        signals.celeryd_init.connect(_no_banner, weak=False)
    app = Celery("inference-broker", broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        # kombu's Redis transport, reusing its redis-py client (workers/transport.py); None:
        # the URL's scheme picks kombu's own
        broker_transport=None if kombu_transport else "workers.transport:Transport",
        worker_hijack_root_logger=False,
        task_default_queue="broker.default",
    )
    return app


def _logging_is_configured(**_) -> None:
    """Celery's ``setup_logging`` receiver: the process configured logging at start."""


def _no_banner(instance, **_) -> None:
    """JSON logs: the worker's start-up banner is printed, not logged, and would be the only
    lines of the log that are not JSON (as ``celery --quiet worker`` does)."""
    instance.quiet = True


#: Where kombu's Redis transport keeps delivered, not yet acknowledged messages (its defaults).
UNACKED_KEY = "unacked"
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)


def attempts_in_redis(client: redis.Redis, queues: Iterable[str]) -> set[tuple[str, int]]:
    """(request id, attempt) of every execute task Redis holds: waiting in one of ``queues``
    (and their priority lists) or delivered to a worker and not yet acknowledged.

    Reads kombu's Redis layout (its message envelope and the ``unacked`` hash), so a dispatch
    whose message is in neither place can be told apart: its task was lost. Messages that cannot
    be read are ignored.
    """
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            for name in (queue, *(f"{queue}{_PRIORITY_SEP}{p}" for p in _PRIORITY_STEPS)):
                pipe.lrange(name, 0, -1)
        pipe.hgetall(UNACKED_KEY)
        *lists, unacked = pipe.execute()
    messages: list[bytes | dict] = [message for queued in lists for message in queued]
    messages += [message for _, message, _ in _delivered(unacked)]
    return {key for message in messages for key in _attempts_of(message)}


def held_by_workers(client: redis.Redis, queue: str) -> dict[str, int]:
    """By delivery tag, how many attempts each message delivered from ``queue`` and not yet
    acknowledged carries (the chaos harness's proof that a killed worker held several-ticket
    messages). A dead worker's messages stay there until kombu restores them."""
    return {
        tag.decode(): len(_attempts_of(message))
        for tag, message, routing_key in _delivered(client.hgetall(UNACKED_KEY))
        if routing_key == queue
    }


def _delivered(unacked: dict[bytes, bytes]) -> Iterator[tuple[bytes, dict, str]]:
    """(delivery tag, message, queue) of each entry of kombu's ``unacked`` hash, whose values
    are ``[message, exchange, routing key]``; entries that cannot be read are skipped."""
    for tag, entry in unacked.items():
        try:
            message, _, routing_key = json.loads(entry)
        except (ValueError, TypeError):
            continue
        yield tag, message, routing_key


def _attempts_of(message: bytes | dict) -> list[tuple[str, int]]:
    try:
        return [(t["request_id"], int(t["attempt"])) for t in tickets_of(message)]
    except (ValueError, TypeError, KeyError):
        return []


def tickets_of(message: bytes | dict) -> list[dict[str, Any]]:
    """The tickets (task keyword arguments) an execute or execute_many message carries, raw or
    already decoded; [] for any other message, or one that cannot be read."""
    try:
        envelope = json.loads(message) if isinstance(message, bytes) else message
        task = envelope.get("headers", {}).get("task")
        if task not in (EXECUTE, EXECUTE_MANY):
            return []
        body = envelope["body"]
        if envelope.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        kwargs = json.loads(body)[1]
        return list(kwargs["tickets"]) if task == EXECUTE_MANY else [kwargs]
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return []
