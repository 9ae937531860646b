"""How a webhook is signed, after the Standard Webhooks layout, kept to one scheme.

Three headers go with every POST:

- ``webhook-id``: the delivery id, the same on every redelivery (deduplicate on it);
- ``webhook-timestamp``: unix seconds when this attempt was signed;
- ``webhook-signature``: ``v1=<hex>``, HMAC-SHA256 with the team's secret over
  ``f"{timestamp}.{body}"`` (the raw body bytes, exactly as sent).

A team's secret comes from the environment variable its ``webhook_secret_env`` names; without
one it is :func:`derive_team_secret` of ``BROKER_WEBHOOK_SECRET`` and the team id, so a dev stack
signs with no configuration. A secret is never logged or returned.
"""

from __future__ import annotations

import hashlib
import hmac

ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
SCHEME = "v1"


def signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, delivery_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three headers for one attempt."""
    return {
        ID_HEADER: delivery_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: f"{SCHEME}={signature(secret, timestamp, body)}",
    }


def derive_team_secret(base: str, team_id: str) -> str:
    """A team's secret when it has no ``webhook_secret_env``: HMAC-SHA256(base, team id), hex."""
    return hmac.new(base.encode(), f"webhook:{team_id}".encode(), hashlib.sha256).hexdigest()
