"""Delivering job webhooks: the Celery task on the ``webhooks`` queue and its signed POST.

A dedicated process (``inference-broker webhooks``: a Celery worker on the ``webhooks`` queue
with its own thread pool of ``[webhooks] concurrency``) runs it, so a slow receiver never holds a
provider pool's thread. The scheduler leader's outbox pass (:mod:`schedulers.webhook_outbox`)
sends the tasks; each re-reads its delivery row and claims the attempt, so a duplicate task does
nothing, then checks the URL against the SSRF guard again, POSTs to the address it checked (no
redirects), stores the attempt and schedules the next one with exponential backoff and jitter.
Each attempt it made adds one to ``webhook_deliveries_total{outcome}`` in Redis
(:func:`broker.telemetry.metrics.count_webhook_attempt`); a count Redis refuses is lost with a warning,
never the delivery.
"""

from __future__ import annotations

import json
import logging
import os
import random
import socket
import time
from collections.abc import Callable
from datetime import UTC

import httpx
import redis
from celery import Celery

from broker.config.broker_toml import BrokerConfig
from broker.config.settings import Settings
from broker.store import Database, deliveries
from broker.store.deliveries import Claimed
from broker.telemetry.logs import bind
from broker.telemetry.metrics import count_webhook_attempt
from broker.webhooks import signing, ssrf

log = logging.getLogger(__name__)

DELIVER_WEBHOOK = "workers.deliver_webhook"
WEBHOOKS_QUEUE = "webhooks"
_ERROR_CHARS = 500
#: A metrics count must never hold a delivery thread for long: Redis answers in microseconds.
_REDIS_TIMEOUT_S = 2.0


def retry_delay_s(
    attempt: int, first_s: float, cap_s: float, rand: Callable[[], float] = random.random
) -> float:
    """Wait after failed attempt ``attempt`` (1, 2, ...): ``first_s × 2^(attempt−1)``, capped at
    ``cap_s``, plus up to a quarter of it at random so receivers are not hit in lockstep."""
    base = min(cap_s, first_s * 2 ** (attempt - 1))
    return base * (1 + 0.25 * rand())


def lease_s(config: BrokerConfig) -> float:
    """How long an attempt in flight keeps the outbox from sending its delivery again."""
    return config.webhooks.timeout_s + 60


def team_secrets(settings: Settings) -> dict[str, str | None]:
    """Each team's signing secret, read once at start; None: its variable is not set."""
    base = settings.webhook_secret.get_secret_value()
    return {
        team.id: (
            os.environ.get(team.webhook_secret_env)
            if team.webhook_secret_env
            else signing.derive_team_secret(base, team.id)
        )
        for team in settings.config.teams
    }


def envelope(claimed: Claimed, public_url: str) -> bytes:
    data = dict(claimed.payload)
    data["results_url"] = f"{public_url}/v1/jobs/{claimed.job_id}/results"
    event = {
        "id": claimed.id,
        "type": claimed.event_type,
        "created_at": claimed.created_at.astimezone(UTC).isoformat(),
        "data": data,
    }
    return json.dumps(event, separators=(",", ":")).encode()


class WebhookSender:
    def __init__(self, settings: Settings, db: Database, metrics: redis.Redis) -> None:
        self._config = settings.config
        self._public_url = settings.public_url_or_default
        self._secrets = team_secrets(settings)
        self._db = db
        self._metrics = metrics  # where attempts are counted (broker.telemetry.metrics)
        self._http = httpx.Client(
            follow_redirects=False,
            timeout=self._config.webhooks.timeout_s,
            headers={"user-agent": "inference-broker-webhooks"},
        )

    def close(self) -> None:
        self._http.close()

    def deliver(self, delivery_id: str, attempt: int) -> str | None:
        """Make attempt ``attempt`` of the delivery; its status after, or None if it was not
        this task's to make (delivered, failed, or the attempt already started)."""
        webhooks = self._config.webhooks
        claimed = self._db.write(
            lambda s: deliveries.claim(s, delivery_id, attempt, lease_s(self._config))
        )
        if claimed is None:
            return None
        started = time.monotonic()
        status_code, error, permanent = self._post(claimed)
        duration_ms = round((time.monotonic() - started) * 1000)
        age_s = time.time() - claimed.created_at.timestamp()
        retry = retry_delay_s(attempt, webhooks.first_retry_s, webhooks.max_retry_s)
        retry_in = None if permanent or age_s + retry > webhooks.max_age_s else retry
        status = self._db.write(
            lambda s: deliveries.record(
                s,
                claimed,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
                retry_in_s=retry_in,
            )
        )
        after = f"retry in {retry_in:.1f} s" if status == "pending" else status
        log.info(
            "webhook delivery %s job %s attempt %d: status_code=%s error=%s (%d ms) -> %s",
            claimed.id,
            claimed.job_id,
            attempt,
            status_code,
            error,
            duration_ms,
            after,
        )
        self._count(status)
        return status

    def _count(self, status: str) -> None:
        """Count the attempt for ``/metrics``; a Redis failure loses the count, not the
        delivery (it is already recorded in the database)."""
        try:
            count_webhook_attempt(self._metrics, status)
        except redis.RedisError as exc:
            log.warning("webhook attempt not counted in /metrics: %s", _describe(exc))

    def _post(self, claimed: Claimed) -> tuple[int | None, str | None, bool]:
        """(status code, error, permanent): permanent errors are not retried."""
        allow = self._config.webhooks.allow_private_hosts
        try:
            address = ssrf.check_url(claimed.url, allow)[0]
        except ssrf.UnresolvableHost as exc:
            return None, str(exc), False
        except ssrf.UnsafeWebhookUrl as exc:
            return None, f"refused: {exc}", True
        secret = self._secrets.get(claimed.team_id)
        if not secret:
            return None, _no_secret(self._config, claimed.team_id), False
        body = envelope(claimed, self._public_url)
        headers = signing.sign(secret, claimed.id, int(time.time()), body)
        headers["content-type"] = "application/json"
        request = _pinned_request(self._http, claimed.url, address, body, headers)
        try:
            response = self._http.send(request)
            response.close()
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"[:_ERROR_CHARS], False
        if response.is_success:
            return response.status_code, None, False
        return response.status_code, f"HTTP {response.status_code}", False


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _no_secret(config: BrokerConfig, team_id: str) -> str:
    """Why a team has no secret, naming the variable, never a value."""
    if not config.has_team(team_id):
        return f"no signing secret: team {team_id!r} is not in broker.toml any more"
    name = config.team(team_id).webhook_secret_env
    return f"no signing secret for team {team_id!r}: environment variable {name} is not set"


def _pinned_request(
    client: httpx.Client, url: str, address: ssrf.Address, body: bytes, headers: dict[str, str]
) -> httpx.Request:
    """A POST to ``url`` that connects to ``address`` (the one the guard checked), with the
    URL's own Host header and, for https, its name for SNI and certificate checks."""
    original = httpx.URL(url)
    headers = {**headers, "host": original.netloc.decode("ascii")}
    extensions = {"sni_hostname": original.host} if original.scheme == "https" else {}
    pinned = original.copy_with(host=str(address))
    request = client.build_request("POST", pinned, content=body, headers=headers)
    request.extensions.update(extensions)
    return request


def register_webhook_task(app: Celery, sender: WebhookSender) -> None:
    @app.task(name=DELIVER_WEBHOOK, acks_late=True, reject_on_worker_lost=True)
    def deliver_webhook(delivery_id: str, attempt: int) -> None:
        with bind(delivery_id=delivery_id, attempt=attempt):
            sender.deliver(delivery_id, attempt)


def run_webhook_worker(settings: Settings) -> None:
    """The ``inference-broker webhooks`` process."""
    from workers.celery_app import create_celery_app

    db = Database(settings.database_url_or_default, pool_size=settings.db_pool_size)
    metrics = redis.Redis.from_url(
        settings.redis_url,
        socket_timeout=_REDIS_TIMEOUT_S,
        socket_connect_timeout=_REDIS_TIMEOUT_S,
        max_connections=settings.config.webhooks.concurrency + 2,
    )
    sender = WebhookSender(settings, db, metrics)
    app = create_celery_app(settings)
    register_webhook_task(app, sender)
    try:
        app.worker_main(
            [
                "worker",
                f"--queues={WEBHOOKS_QUEUE}",
                "--pool=threads",
                f"--concurrency={settings.config.webhooks.concurrency}",
                f"--hostname=webhooks@{socket.gethostname()}",
                f"--loglevel={settings.log_level}",
                "--without-mingle",
                "--without-gossip",
                *(["--task-events"] if settings.task_events is True else []),
            ]
        )
    finally:
        sender.close()
        metrics.close()
        db.dispose()
