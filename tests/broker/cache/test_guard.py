"""The one-word-change guard: every must-not-hit pair is vetoed, paraphrases are not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from broker.cache.semantic.guard import guard_reason

_spec = importlib.util.spec_from_file_location("cache_pairs", Path(__file__).with_name("pairs.py"))
pairs = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("cache_pairs", pairs)
_spec.loader.exec_module(pairs)

MUST_NOT_HIT = [(f, a, b) for f, rows in pairs.MUST_NOT_HIT.items() for a, b in rows]


def test_the_suite_covers_eight_features_with_at_least_fifty_pairs() -> None:
    assert len(pairs.MUST_NOT_HIT) == 8
    assert len(MUST_NOT_HIT) >= 50


@pytest.mark.parametrize(("feature", "a", "b"), MUST_NOT_HIT)
def test_one_word_changes_are_vetoed_both_ways(feature: str, a: str, b: str) -> None:
    assert guard_reason(a, b) is not None, feature
    assert guard_reason(b, a) is not None, feature


@pytest.mark.parametrize(("a", "b"), pairs.SHOULD_HIT)
def test_paraphrases_pass_the_guard(a: str, b: str) -> None:
    assert guard_reason(a, b) is None


@pytest.mark.parametrize(
    ("a", "b", "reason"),
    [
        ("Why can't I sleep?", "Why can I sleep?", "negation"),
        ("I never eat meat", "I eat meat", "negation"),
        ("Top 5 movies", "Top five movies", None),
        ("Top 5 movies", "Top 10 movies", "numbers"),
        ("Order 4411-A", "Order 4412-A", "numbers"),
        ("Set `retries` to three", "Set `timeout` to three", "quoted"),
        ("Use os.path.join here", "Use os.path.split here", "code identifiers"),
        ("What is the capital of France?", "Quelle est la capitale de la France ?", "language"),
        ("What is the capital of France?", "Какая столица Франции?", "script"),
        ("Convert USD to EUR", "Convert EUR to USD", "direction"),
        ("Is Python faster than Java?", "Is Java faster than Python?", "direction"),
        ("Is the bridge safe?", "Is the bridge unsafe?", "opposite"),
        ("The results were positive", "The results were negative", "opposite"),
    ],
)
def test_each_kind_of_flip_is_named(a: str, b: str, reason: str | None) -> None:
    got = guard_reason(a, b)
    if reason is None:
        assert got is None
    else:
        assert got is not None and reason in got


def test_identical_and_case_only_changes_pass() -> None:
    assert guard_reason("Reset my password", "Reset my password") is None
    assert guard_reason("how do I learn python?", "How do I learn Python?") is None
