"""Verifying a webhook from the broker, on the receiver's side (see :mod:`broker.webhooks.signing`
for the scheme)::

    from broker.client import WebhookVerificationError, verify_webhook

    try:
        event = verify_webhook(request.body, request.headers, secret)
    except WebhookVerificationError:
        return 400
    if already_seen(event["id"]):  # redeliveries keep their id
        return 200
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from broker.client._errors import WebhookVerificationError
from broker.webhooks.signing import (
    ID_HEADER,
    SCHEME,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
)


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance_s: float = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """The event (parsed JSON) if ``body`` was signed with ``secret`` within ``tolerance_s`` of
    ``now`` (default: the clock); else :class:`WebhookVerificationError`. Header names are
    matched case-insensitively; pass the raw body bytes, not re-serialised JSON."""
    lowered = {k.lower(): v for k, v in headers.items()}
    values = {}
    for name in (ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER):
        if not lowered.get(name):
            raise WebhookVerificationError(f"missing {name} header")
        values[name] = lowered[name]
    try:
        timestamp = int(values[TIMESTAMP_HEADER])
    except ValueError as exc:
        raise WebhookVerificationError(f"{TIMESTAMP_HEADER} is not unix seconds") from exc
    now = time.time() if now is None else now
    if abs(now - timestamp) > tolerance_s:
        raise WebhookVerificationError(
            f"{TIMESTAMP_HEADER} is {now - timestamp:+.0f} s from now, outside the "
            f"{tolerance_s:g} s tolerance (a replay, or a clock off)"
        )
    expected = signature(secret, timestamp, body)
    offered = [
        sig.split("=", 1)[1]
        for sig in values[SIGNATURE_HEADER].replace(",", " ").split()
        if sig.startswith(f"{SCHEME}=")
    ]
    if not any(hmac.compare_digest(expected, sig) for sig in offered):
        raise WebhookVerificationError("signature does not match the body and secret")
    try:
        event = json.loads(body)
    except ValueError as exc:
        raise WebhookVerificationError("body is not JSON") from exc
    if not isinstance(event, dict) or event.get("id") != values[ID_HEADER]:
        raise WebhookVerificationError(f"body id does not match {ID_HEADER}")
    return event
