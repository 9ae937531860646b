"""Webhook signing and ``verify_webhook``, and the SSRF guard's address classification."""

from __future__ import annotations

import ipaddress
import json

import pytest

import broker.client
from broker.client import WebhookVerificationError, verify_webhook
from broker.errors import BrokerError
from broker.webhooks import signing, ssrf

SECRET = "s3cret-for-tests"
NOW = 1_780_000_000


def signed(event: dict | None = None, secret: str = SECRET, at: int = NOW):
    event = event or {"id": "whd_1", "type": "job.finished", "data": {"job_id": "job_1"}}
    body = json.dumps(event).encode()
    return body, signing.sign(secret, event["id"], at, body)


def test_round_trip_returns_the_event():
    body, headers = signed()
    assert headers["webhook-signature"].startswith("v1=")
    event = verify_webhook(body, headers, SECRET, now=NOW + 10)
    assert event["id"] == "whd_1" and event["data"]["job_id"] == "job_1"


def test_header_names_are_case_insensitive():
    body, headers = signed()
    upper = {k.upper(): v for k, v in headers.items()}
    assert verify_webhook(body, upper, SECRET, now=NOW)["id"] == "whd_1"


def test_a_tampered_body_fails():
    body, headers = signed()
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(body.replace(b"job_1", b"job_2"), headers, SECRET, now=NOW)


def test_a_wrong_secret_fails():
    body, headers = signed()
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(body, headers, "another-secret", now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, -86400])
def test_stale_and_future_timestamps_fail(skew):
    body, headers = signed(at=NOW + skew)
    with pytest.raises(WebhookVerificationError, match="tolerance"):
        verify_webhook(body, headers, SECRET, now=NOW)
    assert verify_webhook(body, headers, SECRET, now=NOW, tolerance_s=abs(skew) + 1)


def test_a_replayed_timestamp_cannot_be_refreshed_without_the_secret():
    body, headers = signed(at=NOW - 3600)
    fresh = {**headers, "webhook-timestamp": str(NOW)}  # the signature covers the timestamp
    with pytest.raises(WebhookVerificationError, match="signature"):
        verify_webhook(body, fresh, SECRET, now=NOW)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_fails(missing):
    body, headers = signed()
    del headers[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing {missing}"):
        verify_webhook(body, headers, SECRET, now=NOW)


def test_the_id_header_must_match_the_body():
    body, headers = signed()
    with pytest.raises(WebhookVerificationError, match="id"):
        verify_webhook(body, {**headers, "webhook-id": "whd_other"}, SECRET, now=NOW)


def test_the_error_is_a_broker_error_and_exported():
    assert issubclass(WebhookVerificationError, BrokerError)
    assert {"WebhookVerificationError", "verify_webhook"} <= set(broker.client.__all__)


def test_derived_team_secrets_are_stable_distinct_and_hide_the_base():
    a = signing.derive_team_secret("base", "product")
    assert a == signing.derive_team_secret("base", "product")
    assert a != signing.derive_team_secret("base", "content")
    assert a != signing.derive_team_secret("other", "product")
    assert "base" not in a and len(a) == 64


# --- SSRF guard ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fc00::1", "private"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("::ffff:127.0.0.1", "loopback"),
        ("100.64.0.1", "not globally routable"),
    ],
)
def test_non_public_addresses_are_refused(address, reason):
    assert ssrf.forbidden_reason(ipaddress.ip_address(address)) == reason


def test_reserved_ranges_are_refused():
    assert ssrf.forbidden_reason(ipaddress.ip_address("240.0.0.1")) is not None


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_pass(address):
    assert ssrf.forbidden_reason(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "https://10.0.0.8/x",
        "http://169.254.169.254/latest",
        "http://[::1]:8080/",
        "http://[fc00::5]/",
        "http://localhost:1/hook",
    ],
)
def test_urls_to_private_hosts_are_refused(url):
    with pytest.raises(ssrf.UnsafeWebhookUrl, match="allow_private_hosts"):
        ssrf.check_url(url, [])


def test_a_public_literal_passes_and_the_allowlist_admits_a_private_host():
    assert ssrf.check_url("https://8.8.8.8/hook", []) == [ipaddress.ip_address("8.8.8.8")]
    assert ssrf.check_url("http://127.0.0.1:9/hook", ["127.0.0.1"])
    assert ssrf.check_url("http://[::1]:9/hook", ["[::1]"])
    with pytest.raises(ssrf.UnsafeWebhookUrl):
        ssrf.check_url("http://10.0.0.1/hook", ["127.0.0.1"])  # only the hosts listed


def test_a_host_that_does_not_resolve_is_said_so():
    with pytest.raises(ssrf.UnresolvableHost, match="does not resolve"):
        ssrf.check_url("http://no-such-host.invalid/hook", [])
