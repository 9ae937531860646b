"""Anthropic Messages API.

``api`` holds the endpoint and headers, ``messages`` the request mapping (system messages move
to the top level; temperature is clamped to 1.0, Anthropic's maximum; ``stop`` becomes
``stop_sequences``, a ``json_schema`` response format ``output_config.format``; ``seed`` is
dropped, ``json_object`` refused) and response parsing, ``messages_stream`` the reading of a
streamed answer, ``errors`` the error classification; this module assembles them into the
registry's adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.providers.anthropic import errors, messages, messages_stream


@dataclass(frozen=True)
class AnthropicAdapter:
    """Stateless: one shared instance serves every Anthropic-format provider."""

    name: str = "anthropic"
    unsupported = staticmethod(messages.unsupported)
    build = staticmethod(messages.build)
    parse = staticmethod(messages.parse)
    stream_build = staticmethod(messages.stream_build)
    stream_reader = staticmethod(messages_stream.MessagesStreamReader)
    classify = staticmethod(errors.classify)


ADAPTER = AnthropicAdapter()

__all__ = ["ADAPTER", "AnthropicAdapter"]
