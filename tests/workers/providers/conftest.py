"""Shared configs and canned bodies for the provider adapter tests (no simulator, no network)."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from broker.config.broker_toml import ModelConfig, ProviderConfig

# The documented examples from shared/WIRE_FORMATS.md, with the "…" placeholders filled in.
OPENAI_EXAMPLE_TEXT = """
{"id": "chatcmpl-abc123", "object": "chat.completion", "created": 1731900000,
 "model": "gpt-4o-mini",
 "choices": [{"index": 0,
              "message": {"role": "assistant", "content": "Hello there.", "refusal": null},
              "finish_reason": "stop", "logprobs": null}],
 "usage": {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42,
           "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
           "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                         "accepted_prediction_tokens": 0,
                                         "rejected_prediction_tokens": 0}},
 "system_fingerprint": "fp_44709d6fcb", "service_tier": "default"}
"""

ANTHROPIC_EXAMPLE_TEXT = """
{"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
 "model": "claude-haiku-4-5",
 "content": [{"type": "text", "text": "Hello there."}], "stop_reason": "end_turn",
 "stop_sequence": null,
 "usage": {"input_tokens": 12, "output_tokens": 30,
           "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}
"""


@pytest.fixture
def openai_example_text() -> str:
    return OPENAI_EXAMPLE_TEXT


@pytest.fixture
def anthropic_example_text() -> str:
    return ANTHROPIC_EXAMPLE_TEXT


@pytest.fixture
def openai_example() -> dict:
    """A fresh copy per test, free to edit."""
    return json.loads(OPENAI_EXAMPLE_TEXT)


@pytest.fixture
def anthropic_example() -> dict:
    """A fresh copy per test, free to edit."""
    return json.loads(ANTHROPIC_EXAMPLE_TEXT)


@pytest.fixture
def mini() -> ModelConfig:
    return ModelConfig(
        name="gpt-4o-mini",
        provider="sim-openai",
        provider_model_id="gpt-4o-mini-2024-07-18",
        input_price=Decimal("0.15"),
        output_price=Decimal("0.60"),
        cached_input_price=Decimal("0.075"),
        context_window=128_000,
        max_output=16_384,
    )


@pytest.fixture
def haiku() -> ModelConfig:
    return ModelConfig(
        name="claude-haiku-4-5",
        provider="sim-anthropic",
        provider_model_id="claude-haiku-4-5-20251001",
        input_price=Decimal("1.00"),
        output_price=Decimal("5.00"),
        cached_input_price=Decimal("0.10"),
        context_window=200_000,
        max_output=64_000,
    )


@pytest.fixture
def openai_provider() -> ProviderConfig:
    return ProviderConfig(
        name="sim-openai",
        kind="simulated",
        wire="openai",
        base_url="http://sim.test/",
        concurrency=8,
        timeout_s=2.5,
    )


@pytest.fixture
def anthropic_provider() -> ProviderConfig:
    return ProviderConfig(
        name="sim-anthropic",
        kind="simulated",
        wire="anthropic",
        base_url="http://sim.test",
        concurrency=8,
        timeout_s=2.5,
    )


@pytest.fixture
def payload() -> dict:
    return {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Say hello."},
        ],
        "max_tokens": 64,
        "temperature": 0.2,
    }
