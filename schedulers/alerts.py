"""Alerts: budget thresholds crossed, runaway teams paused, reservations of dead attempts.

Each alert goes to the log (a warning), to a capped list in Redis that the admin API serves
(``GET /v1/admin/alerts``), and to the team's ``alert_webhook`` if it has one (a JSON POST from
a background thread, best effort: a slow or failing receiver never holds up a worker or the
scheduler). A budget threshold alerts once per budget window per threshold (a Redis flag that
expires with the window).
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import redis

from broker import redis_keys
from broker.config.broker_toml import BrokerConfig
from broker.money import format_usd

log = logging.getLogger(__name__)

KEEP = 1000
WEBHOOK_TIMEOUT_S = 5.0
#: A trace ceiling has no window: its flags live this long.
TRACE_FLAG_TTL_S = 7 * 24 * 3600


class Alerts:
    def __init__(self, client: redis.Redis, config: BrokerConfig) -> None:
        self._redis = client
        self._config = config
        self._webhooks: ThreadPoolExecutor | None = None

    def budget_level(self, scope: Any, spent: int) -> None:
        """Fire the thresholds ``spent`` has crossed in ``scope`` (a ``budgets.Scope``) that have
        not fired in its window yet."""
        now = datetime.now(UTC)
        ttl = int((scope.end - now).total_seconds()) + 3600 if scope.end else TRACE_FLAG_TTL_S
        for threshold in sorted(self._config.budget_alert_thresholds):
            if spent < threshold * scope.limit:
                break
            pct = f"{round(threshold * 100)}"
            if self._redis.set(redis_keys.alert_sent(scope.key, pct), 1, nx=True, ex=max(ttl, 60)):
                self.fire(
                    scope.team,
                    "budget_threshold",
                    f"budget {scope.label} at {pct}%: spent {format_usd(spent)} of "
                    f"{format_usd(scope.limit)}",
                    budget=scope.label,
                    threshold=threshold,
                    spent_micros=spent,
                    limit_micros=scope.limit,
                )

    def fire(self, team: str, kind: str, message: str, **details: Any) -> None:
        alert = {
            "type": kind,
            "team": team,
            "message": message,
            "at": datetime.now(UTC).isoformat(),
            **details,
        }
        log.warning("ALERT %s team=%s: %s", kind, team, message)
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(redis_keys.alerts(), json.dumps(alert))
            pipe.ltrim(redis_keys.alerts(), 0, KEEP - 1)
            pipe.execute()
        url = self._config.team(team).alert_webhook if self._config.has_team(team) else None
        if url:
            if self._webhooks is None:
                self._webhooks = ThreadPoolExecutor(max_workers=2, thread_name_prefix="alerts")
            self._webhooks.submit(_post, url, alert)


def _post(url: str, alert: dict[str, Any]) -> None:
    try:
        httpx.post(url, json=alert, timeout=WEBHOOK_TIMEOUT_S).raise_for_status()
    except httpx.HTTPError as exc:
        log.warning("alert webhook %s failed: %s", url, exc)


def recent_alerts(client: redis.Redis, team: str | None = None, limit: int = 100) -> list[dict]:
    """Newest first; only ``team``'s when given."""
    out = []
    for raw in client.lrange(redis_keys.alerts(), 0, KEEP - 1):
        alert = json.loads(raw)
        if team is None or alert.get("team") == team:
            out.append(alert)
            if len(out) >= limit:
                break
    return out
