"""Where and how to call the Anthropic Messages API."""

from __future__ import annotations

PATH = "/v1/messages"
VERSION = "2023-06-01"
#: Headers carrying the provider's request id, most specific first.
REQUEST_ID_HEADERS = ("request-id", "x-request-id")


def headers(api_key: str | None) -> dict[str, str]:
    """``x-api-key`` plus the pinned API version; no key header for keyless test servers."""
    out = {"accept": "application/json", "anthropic-version": VERSION}
    if api_key is not None:
        out["x-api-key"] = api_key
    return out
