"""Provider adapters: one folder per wire format, one shared HTTP call path.

Each ``workers/providers/<wire>/`` folder maps requests, parses responses and usage, and
classifies errors for its wire format, with no I/O; :class:`ProviderClient` is the only code
that makes HTTP calls. Adding a provider kind is a new folder plus one entry in ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from broker.errors import ConfigError
from workers.providers import anthropic, openai
from workers.providers.base import (
    Completion,
    HttpCall,
    WireAdapter,
    cache_savings,
    completion_cost,
)

#: Wire format (``ProviderConfig.wire_format``) → adapter.
ADAPTERS: Mapping[str, WireAdapter] = MappingProxyType(
    {
        "openai": openai.ADAPTER,
        "anthropic": anthropic.ADAPTER,
    }
)


def adapter_for(wire_format: str) -> WireAdapter:
    """The adapter for a wire format; unknown formats are a configuration error."""
    try:
        return ADAPTERS[wire_format]
    except KeyError:
        known = ", ".join(sorted(ADAPTERS))
        raise ConfigError(
            "providers", "wire", f"unknown wire format {wire_format!r} (known: {known})"
        ) from None


# Imported last: http.py looks adapters up through ``adapter_for`` defined above.
from workers.providers.http import ProviderClient

__all__ = [
    "ADAPTERS",
    "Completion",
    "HttpCall",
    "ProviderClient",
    "WireAdapter",
    "adapter_for",
    "cache_savings",
    "completion_cost",
]
