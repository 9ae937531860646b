"""What both surfaces share: finish reasons across providers, and the status of a failure."""

from __future__ import annotations

import pytest

from broker.dropin.wire import anthropic_stop, failure_of, openai_finish


@pytest.mark.parametrize(
    ("provider_said", "openai", "anthropic"),
    [
        ("stop", "stop", "end_turn"),  # OpenAI: a natural end or a stop sequence alike
        ("length", "length", "max_tokens"),
        ("end_turn", "stop", "end_turn"),
        ("stop_sequence", "stop", "stop_sequence"),
        ("max_tokens", "length", "max_tokens"),
        (None, "stop", "end_turn"),
    ],
)
def test_finish_reasons_map_to_each_surface(provider_said, openai, anthropic):
    assert openai_finish(provider_said) == openai
    assert anthropic_stop(provider_said) == anthropic


def test_a_request_the_provider_rejected_is_a_400_the_sdks_do_not_retry():
    status, code, message, headers = failure_of(
        "failed", "provider_rejected", "anthropic: top_k: the OpenAI Chat Completions API has no"
    )
    assert (status, code, headers) == (400, "provider_rejected", {})
    assert "top_k" in message
