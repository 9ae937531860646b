"""Cheap features of a candidate pair (query turn, cached turn) for the decision model.

Cosine alone separates paraphrases from near-miss non-duplicates poorly at low error rates:
many wrong pairs share almost every word but one, and many paraphrases reword freely. A few
lexical signals computed in microseconds (content-word overlap, unmatched content words,
character trigram overlap, question word, names) sharpen the estimate of "same meaning"
without another model call.

:func:`vector_features` gives the learned pair head its input from the two embedding
vectors the caller already has: ``|u - v|`` and ``u * v`` (symmetric in the pair).
"""

from __future__ import annotations

import math
import re

import numpy as np

from broker.cache.semantic.text import content_stems, tokens

__all__ = ["FEATURE_NAMES", "pair_features", "vector_features"]

FEATURE_NAMES: tuple[str, ...] = (
    "cosine",
    "cosine_sq",
    "content_jaccard",
    "trigram_jaccard",
    "log_unmatched",
    "max_unmatched_share",
    "length_ratio",
    "same_question_word",
    "names_differ",
    "cosine_x_jaccard",
)

_QUESTION_WORDS = ("what", "how", "why", "when", "where", "who", "which", "whom", "whose")
_CAPITALISED = re.compile(r"(?<=[\w,;:] )[A-Z][\w-]*")


def _trigrams(text: str) -> set[str]:
    squeezed = " " + " ".join(tokens(text)) + " "
    return {squeezed[i : i + 3] for i in range(len(squeezed) - 2)}


def _jaccard(x: set[str], y: set[str]) -> float:
    union = x | y
    return len(x & y) / len(union) if union else 1.0


def _question_word(words: list[str]) -> str:
    return next((w for w in words if w in _QUESTION_WORDS), "")


def _names(text: str) -> set[str]:
    """Capitalised words not at the start of a sentence: a rough proxy for named entities."""
    return {m.group(0).lower() for m in _CAPITALISED.finditer(text)}


def pair_features(a: str, b: str, cosine: float) -> np.ndarray:
    """The feature vector (order of :data:`FEATURE_NAMES`) for texts ``a``, ``b``."""
    wa, wb = tokens(a), tokens(b)
    ca, cb = set(content_stems(wa)), set(content_stems(wb))
    only_a, only_b = ca - cb, cb - ca
    jac = _jaccard(ca, cb)
    names_a, names_b = _names(a) - set(wb), _names(b) - set(wa)
    return np.array(
        [
            cosine,
            cosine * cosine,
            jac,
            _jaccard(_trigrams(a), _trigrams(b)),
            math.log1p(len(only_a) + len(only_b)),
            max(len(only_a) / max(len(ca), 1), len(only_b) / max(len(cb), 1)),
            min(len(wa), len(wb)) / max(len(wa), len(wb), 1),
            float(_question_word(wa) == _question_word(wb)),
            float(bool(names_a and names_b)),
            cosine * jac,
        ],
        dtype=np.float64,
    )


def vector_features(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[|u - v|, u * v]`` of the two unit-normalised embeddings (length ``2 * dim``).

    Works on single vectors or on matching rows of two matrices.
    """
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    u = u / np.maximum(np.linalg.norm(u, axis=-1, keepdims=True), 1e-12)
    v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
    return np.concatenate([np.abs(u - v), u * v], axis=-1)
