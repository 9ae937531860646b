"""OpenAI-compatible Chat Completions (OpenAI, Groq, Together, vLLM, Ollama, OpenRouter, ...).

``api`` holds the endpoint and headers, ``chat`` the request mapping and response parsing,
``errors`` the error classification; this module assembles them into the registry's adapter.
"""

from __future__ import annotations

from dataclasses import dataclass

from workers.providers.openai import chat, errors


@dataclass(frozen=True)
class OpenAIAdapter:
    """Stateless: one shared instance serves every OpenAI-format provider."""

    name: str = "openai"
    build = staticmethod(chat.build)
    parse = staticmethod(chat.parse)
    classify = staticmethod(errors.classify)


ADAPTER = OpenAIAdapter()

__all__ = ["ADAPTER", "OpenAIAdapter"]
