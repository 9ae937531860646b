"""OpenAI-compatible Chat Completions and Embeddings (OpenAI, Groq, Together, vLLM, Ollama,
OpenRouter, ...).

``api`` holds the endpoints and headers, ``chat`` and ``embeddings`` the request mapping and
response parsing of each, ``chat_stream`` the reading of a streamed chat answer, ``errors`` the
error classification; this module assembles them into the registry's adapter. A stored payload
with ``kind: embedding`` goes to the embeddings endpoint, and its :class:`HttpCall` names the
embeddings reader; embeddings have no stream.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.config.broker_toml import ModelConfig
from workers.providers.base import HttpCall, Unsupported
from workers.providers.openai import chat, chat_stream, embeddings, errors


def unsupported(payload: dict) -> Unsupported | None:
    if payload.get("kind") == "embedding":
        return None  # the request's schema allows no chat parameters on an embedding request
    return chat.unsupported(payload)


def build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    if payload.get("kind") == "embedding":
        return embeddings.build(model, payload, api_key)
    return chat.build(model, payload, api_key)


def stream_build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    if payload.get("kind") == "embedding":
        refused = Unsupported("stream", "embeddings have no stream; send them with build")
        raise refused.rejected("openai")
    return chat.stream_build(model, payload, api_key)


@dataclass(frozen=True)
class OpenAIAdapter:
    """Stateless: one shared instance serves every OpenAI-format provider."""

    name: str = "openai"
    unsupported = staticmethod(unsupported)
    build = staticmethod(build)
    parse = staticmethod(chat.parse)
    stream_build = staticmethod(stream_build)
    stream_reader = staticmethod(chat_stream.ChatStreamReader)
    classify = staticmethod(errors.classify)


ADAPTER = OpenAIAdapter()

__all__ = ["ADAPTER", "OpenAIAdapter"]
