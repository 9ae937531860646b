"""Cascade checks: does a cheaper tier's answer stand, or does the request go up a tier?

Deterministic and cheap, each a function of the answer, how it ended and what was asked:

- ``empty``: no text (white space only);
- ``refusal``: a refusal or hedging instead of an answer ("I can't help with", "as an AI",
  "I'm not sure", ...), at the start of the answer;
- ``truncated``: the provider stopped at ``max_tokens`` (``finish_reason`` length);
- ``json``: the prompt asked for JSON (``response_format`` of type json, or "respond in JSON"
  in its text) and the answer does not parse as JSON;
- ``answer_format``: the prompt asked for a final answer in a form ("#### <number>", "answer
  with a single letter", "Answer: ..."), and the answer does not give one.

A route's ``cascade.checks`` chooses which run (:class:`broker.config.routes.CascadeConfig`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_REFUSAL = re.compile(
    r"^\W*(i('| a)?m sorry|sorry,|i (can ?not|can't|won't|am unable|'m unable)|i am not able|"
    r"as an ai|i'm not sure|i am not sure|i don't know|i do not know|unfortunately,? i)",
    re.IGNORECASE,
)
_ASKS_JSON = re.compile(
    r"\b(respond|reply|answer|output|return)\b[^.\n]{0,40}\bjson\b", re.IGNORECASE
)
_ASKS_HASHES = re.compile(r"####")
_HAS_HASH_ANSWER = re.compile(r"####\s*-?[\d,]*\.?\d+")
_ASKS_LETTER = re.compile(
    r"\b(answer|respond|reply) with (only )?(a|one|the) (single )?letter\b", re.IGNORECASE
)
_HAS_LETTER = re.compile(
    r"^\W*\(?[A-E]\)?\W*$|\b(answer|option)( is)?:?\s*\(?[A-E]\)?\b", re.IGNORECASE
)
_ASKS_ANSWER_LINE = re.compile(r"\bend with ['\"]?answer:", re.IGNORECASE)
_HAS_ANSWER_LINE = re.compile(r"^answer:\s*\S", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Verdict:
    accept: bool
    check: str | None = None  # the check that turned it down
    reason: str = "every check passed"


def judge(
    output: str | None,
    finish_reason: str | None,
    payload: Mapping[str, Any],
    checks: Sequence[str],
) -> Verdict:
    """The first check in ``checks`` that turns the answer down, or acceptance."""
    text = output or ""
    prompt = "\n".join(str(m.get("content", "")) for m in payload.get("messages", []))
    for check in checks:
        reason = _CHECKS[check](text, finish_reason, prompt, payload)
        if reason is not None:
            return Verdict(False, check, reason)
    return Verdict(True)


def _empty(text: str, *_: Any) -> str | None:
    return "the answer is empty" if not text.strip() else None


def _refusal(text: str, *_: Any) -> str | None:
    return "the answer refuses or hedges" if _REFUSAL.search(text) else None


def _truncated(_: str, finish_reason: str | None, *__: Any) -> str | None:
    return "the answer was cut off at max_tokens" if finish_reason == "length" else None


def _json(text: str, _: str | None, prompt: str, payload: Mapping[str, Any]) -> str | None:
    fmt = payload.get("response_format")
    asked = (isinstance(fmt, Mapping) and str(fmt.get("type", "")).startswith("json")) or bool(
        _ASKS_JSON.search(prompt)
    )
    if not asked:
        return None
    body = text.strip().removeprefix("```json").removeprefix("```").removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError:
        return "JSON was asked for and the answer does not parse"
    return None


def _answer_format(text: str, _: str | None, prompt: str, *__: Any) -> str | None:
    if _ASKS_HASHES.search(prompt) and not _HAS_HASH_ANSWER.search(text):
        return "the prompt asks for '#### <number>' and the answer gives none"
    if _ASKS_LETTER.search(prompt) and not _HAS_LETTER.search(text.strip()):
        return "the prompt asks for a single letter and the answer gives none"
    if _ASKS_ANSWER_LINE.search(prompt) and not _HAS_ANSWER_LINE.search(text):
        return "the prompt asks for an 'Answer:' line and the answer gives none"
    return None


_CHECKS = {
    "empty": _empty,
    "refusal": _refusal,
    "truncated": _truncated,
    "json": _json,
    "answer_format": _answer_format,
}
