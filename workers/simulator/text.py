"""Deterministic completions: the same prompt always yields the same text and the same usage.

Tests and benchmarks compare runs and check cost accounting, so nothing here may depend on time,
process or the order of requests. One word of the vocabulary is exactly one token, which keeps the
reported usage and the generated text consistent by construction.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

VOCABULARY = [
    "the",
    "a",
    "model",
    "request",
    "token",
    "queue",
    "broker",
    "worker",
    "answer",
    "result",
    "batch",
    "provider",
    "latency",
    "budget",
    "team",
    "fair",
    "share",
    "priority",
    "simple",
    "clear",
    "quick",
    "steady",
    "small",
    "large",
    "useful",
    "we",
    "you",
    "it",
    "they",
    "is",
    "are",
    "can",
    "will",
    "run",
    "send",
    "read",
    "write",
    "check",
    "keep",
    "move",
    "and",
    "or",
    "but",
    "so",
    "then",
    "because",
    "while",
    "when",
    "if",
    "not",
    "only",
    "also",
    "data",
    "text",
    "system",
    "value",
    "limit",
    "window",
    "minute",
    "cost",
    "price",
    "cache",
    "retry",
    "error",
]
assert len(VOCABULARY) == 64, len(VOCABULARY)  # one hash byte picks a word: byte & 63

MIN_OUTPUT_TOKENS = 16
OUTPUT_TOKEN_SPREAD = 241  # natural lengths fall in [16, 256]
TOKENS_PER_MESSAGE = 3  # role and separators, as the tiktoken counting recipe adds
TOKENS_PER_REPLY = 3  # the primed assistant turn


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    capped: bool  # stopped by max_tokens
    stop_sequence: str | None  # the stop sequence that ended the text, if any

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


def text_tokens(text: str) -> int:
    """Tokens of a piece of prompt text: one per four UTF-8 bytes, rounded up."""
    return -(-len(text.encode("utf-8")) // 4)


def content_text(content: object) -> str:
    """The text of a message ``content``: a string, or a list of text parts/blocks.

    Non-text parts (images, tool results) contribute their JSON so they still cost tokens.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        pieces = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                pieces.append(part["text"])
            else:
                pieces.append(json.dumps(part, sort_keys=True))
        return "\n".join(pieces)
    return "" if content is None else json.dumps(content, sort_keys=True)


def count_input_tokens(texts: list[str]) -> int:
    """Prompt tokens for a conversation given the text of each message (system included)."""
    return sum(text_tokens(t) + TOKENS_PER_MESSAGE for t in texts) + TOKENS_PER_REPLY


def prompt_digest(model: str, prompt: object) -> bytes:
    """A stable hash of what the text depends on: the model and the whole prompt."""
    material = json.dumps([model, prompt], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(material.encode("utf-8")).digest()


def _words(digest: bytes) -> list[str]:
    """The natural answer for ``digest``: 16..256 words in sentences of 6..13 words.

    Word and sentence choices are bytes of a SHAKE-128 stream seeded by the digest: stable across
    processes and Python versions, and cheap enough for the benchmark's hot path.
    """
    count = MIN_OUTPUT_TOKENS + int.from_bytes(digest[:4], "big") % OUTPUT_TOKEN_SPREAD
    stream = hashlib.shake_128(digest).digest(2 * count)
    words = [VOCABULARY[b & 63] for b in stream[:count]]
    start, lengths = 0, iter(stream[count:])
    while start < count:
        end = min(start + 6 + next(lengths) % 8, count)
        words[start] = words[start].capitalize()
        words[end - 1] += "."
        start = end
    return words


def complete(
    digest: bytes,
    input_tokens: int,
    max_tokens: int | None,
    stop: list[str] | None = None,
) -> Completion:
    """The completion for a prompt digest, capped at ``max_tokens`` and cut at a stop sequence.

    A capped answer is a prefix of the uncapped one, as with a real model at temperature 0.
    """
    words = _words(digest)
    capped = max_tokens is not None and max_tokens < len(words)
    if capped:
        words = words[:max_tokens]
    text, found = cut_at_stop(" ".join(words), stop)
    if found is not None:
        return Completion(text, input_tokens, len(text.split()), False, found)
    return Completion(text, input_tokens, len(words), capped, None)


def cut_at_stop(text: str, stop: list[str] | None) -> tuple[str, str | None]:
    """``text`` up to the earliest stop sequence in it (trailing space dropped), and that
    sequence; ``text`` and None when none occurs."""
    found: str | None = None
    for sequence in stop or ():
        at = text.find(sequence) if sequence else -1
        if at != -1 and (found is None or at < text.find(found)):
            found = sequence
    if found is None:
        return text, None
    return text[: text.find(found)].rstrip(), found
