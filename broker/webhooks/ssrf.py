"""The SSRF guard: a webhook may only reach public addresses, unless the operator allows a host.

A receiver URL's host is resolved and every address it resolves to must be global: no private
(10/8, 172.16/12, 192.168/16, fc00::/7), loopback, link-local (169.254/16 — cloud metadata —,
fe80::/10), multicast, reserved or unspecified address, and no IPv4-mapped one of those. Hosts in
``[webhooks] allow_private_hosts`` (as written in the URL) skip the check. The API applies it at
submission (400 naming ``webhook_url``); the sender applies it again before every POST and then
connects to the address it checked, so a name that re-resolves elsewhere (DNS rebinding) cannot
redirect the POST.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from broker.errors import BrokerError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeWebhookUrl(BrokerError):
    """The URL is malformed or its host is (or resolves to) a non-public address."""


class UnresolvableHost(UnsafeWebhookUrl):
    """The host does not resolve (now): not known to be unsafe, but nowhere to send to."""


def forbidden_reason(address: Address) -> str | None:
    """Why a POST may not go to ``address``; None when it is a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return forbidden_reason(address.ipv4_mapped)
    for attribute, reason in (
        ("is_loopback", "loopback"),
        ("is_link_local", "link-local"),
        ("is_multicast", "multicast"),
        ("is_unspecified", "unspecified"),
        ("is_private", "private"),
        ("is_reserved", "reserved"),
    ):
        if getattr(address, attribute):
            return reason
    return None if address.is_global else "not globally routable"


def host_of(url: str) -> str:
    return _host_and_port(url)[0]


def _host_and_port(url: str) -> tuple[str, int]:
    """The URL's host and port (the scheme's default if none). ``urlsplit`` raises ValueError on
    an unclosed ``[`` and ``.port`` on a port past 65535: both are refused as not a URL."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise UnsafeWebhookUrl(f"webhook_url is not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not host:
        raise UnsafeWebhookUrl("webhook_url must be an http:// or https:// URL with a host")
    return host, port or (443 if parts.scheme == "https" else 80)


def literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHost(f"webhook host {host!r} does not resolve: {exc}") from exc
    seen: dict[str, Address] = {}
    for *_, sockaddr in infos:
        text = str(sockaddr[0]).split("%", 1)[0]  # drop an IPv6 zone
        seen.setdefault(text, ipaddress.ip_address(text))
    return list(seen.values())


def check_url(url: str, allow_hosts: Iterable[str]) -> list[Address]:
    """The addresses ``url``'s host resolves to, all of them safe to POST to (or the host is
    allowed). Raises :class:`UnsafeWebhookUrl` naming the address and why not."""
    host, port = _host_and_port(url)
    allowed = host.lower() in {h.lower().strip("[]") for h in allow_hosts}
    fixed = literal(host)
    addresses = [fixed] if fixed is not None else resolve(host, port)
    if allowed:
        return addresses
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None:
            via = "" if fixed is not None else f" (resolves to {address})"
            raise UnsafeWebhookUrl(
                f"webhook host {host!r}{via} is a {reason} address; receivers must be public, "
                "or the operator must list the host in [webhooks] allow_private_hosts"
            )
    return addresses
