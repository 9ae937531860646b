"""What the learned router sees of a prompt: a sentence embedding and cheap lexical features.

Why both: the embedding (all-MiniLM-L6-v2, the caching issue's embedder, run locally) carries
the topic and kind of task, which is most of what predicts whether a small model copes; the
lexical features (length, digits, numbers, code blocks, question marks, multiple-choice lines,
maths symbols...) are nearly free and carry difficulty signals the embedding flattens, such as
how many quantities a word problem juggles.

When the embedder's optional extra is not installed the extractor degrades to lexical features
only; :class:`FeatureSpec` records that (``embedder=None``, ``degraded_reason``) so a model
trained that way says so in its JSON, and a model that needs the embedder refuses to run
without it instead of silently scoring garbage.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from broker.embeddings import Embedder, EmbedderUnavailable

__all__ = [
    "LEXICAL_FEATURES",
    "FeatureExtractor",
    "FeatureSpec",
    "lexical_features",
    "local_embedder_or_reason",
]

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_CHOICE_LINE = re.compile(r"^\s*\(?[A-Ha-h][.)]\s", re.MULTILINE)
_MATH = re.compile(r"[=+\-*/^%<>]")
_LATEX = re.compile(r"\\[a-zA-Z]+|\$[^$]+\$")
_CODE_CHARS = re.compile(r"[{}();\[\]]")
_URL = re.compile(r"https?://")
_WORD = re.compile(r"\w+")


def _log1p(value: float) -> float:
    return math.log1p(max(value, 0.0))


def _word_lengths(text: str) -> list[int]:
    return [len(word) for word in _WORD.findall(text)]


#: Name → function of the prompt text. The order is the column order in the feature matrix and
#: is written into every saved model; append new features, never reorder.
_LEXICAL: tuple[tuple[str, Callable[[str], float]], ...] = (
    ("log_chars", lambda t: _log1p(len(t))),
    ("log_words", lambda t: _log1p(len(_WORD.findall(t)))),
    ("log_lines", lambda t: _log1p(t.count("\n") + 1)),
    ("digit_fraction", lambda t: sum(c.isdigit() for c in t) / max(len(t), 1)),
    ("log_numbers", lambda t: _log1p(len(_NUMBER.findall(t)))),
    ("log_question_marks", lambda t: _log1p(t.count("?"))),
    ("code_blocks", lambda t: float(t.count("```") // 2)),
    ("inline_code", lambda t: _log1p(t.count("`") - 3 * t.count("```"))),
    ("choice_lines", lambda t: float(len(_CHOICE_LINE.findall(t)))),
    ("log_math_symbols", lambda t: _log1p(len(_MATH.findall(t)))),
    ("log_latex", lambda t: _log1p(len(_LATEX.findall(t)))),
    ("log_code_chars", lambda t: _log1p(len(_CODE_CHARS.findall(t)))),
    ("urls", lambda t: float(len(_URL.findall(t)))),
    ("upper_fraction", lambda t: sum(c.isupper() for c in t) / max(len(t), 1)),
    ("non_ascii_fraction", lambda t: sum(ord(c) > 127 for c in t) / max(len(t), 1)),
    ("mean_word_length", lambda t: float(np.mean(_word_lengths(t))) if _WORD.search(t) else 0.0),
    ("long_word_fraction", lambda t: float(np.mean([n >= 9 for n in _word_lengths(t)] or [0]))),
)

#: The lexical feature names, in column order.
LEXICAL_FEATURES: tuple[str, ...] = tuple(name for name, _ in _LEXICAL)


def lexical_features(texts: Sequence[str], names: Sequence[str] = LEXICAL_FEATURES) -> np.ndarray:
    """The named lexical features of each text: shape ``(len(texts), len(names))``, float64."""
    table = dict(_LEXICAL)
    unknown = [name for name in names if name not in table]
    if unknown:
        raise ValueError(f"unknown lexical features {unknown}; known: {list(LEXICAL_FEATURES)}")
    functions = [table[name] for name in names]
    out = np.zeros((len(texts), len(functions)), dtype=np.float64)
    for row, text in enumerate(texts):
        for col, function in enumerate(functions):
            out[row, col] = function(text)
    return out


@dataclass(frozen=True)
class FeatureSpec:
    """Which features a model uses, in column order: the embedding (if any), then lexical.

    ``embedder`` is the embedder's name (``None``: lexical only); ``degraded_reason`` says why
    a model is lexical-only when that was not a choice (the extra was missing at training).
    """

    lexical: tuple[str, ...] = LEXICAL_FEATURES
    embedder: str | None = None
    embedding_dim: int = 0
    degraded_reason: str | None = None

    @property
    def width(self) -> int:
        """Number of columns in the feature matrix."""
        return self.embedding_dim + len(self.lexical)

    @property
    def names(self) -> list[str]:
        """Column names: ``emb_0..emb_{d-1}`` then the lexical names."""
        return [f"emb_{i}" for i in range(self.embedding_dim)] + list(self.lexical)

    def to_dict(self) -> dict[str, Any]:
        return {
            "embedder": self.embedder,
            "embedding_dim": self.embedding_dim,
            "lexical": list(self.lexical),
            "degraded": self.degraded_reason is not None,
            "degraded_reason": self.degraded_reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            lexical=tuple(data["lexical"]),
            embedder=data.get("embedder"),
            embedding_dim=int(data.get("embedding_dim", 0)),
            degraded_reason=data.get("degraded_reason"),
        )


def local_embedder_or_reason() -> tuple[Embedder | None, str | None]:
    """The local MiniLM embedder, loaded, or ``(None, why not)`` when the extra is missing."""
    try:
        from broker.embeddings.local import LocalEmbedder

        embedder = LocalEmbedder()
        embedder.load()
    except (ImportError, EmbedderUnavailable) as exc:
        return None, f"embedder unavailable, lexical features only: {exc}"
    return embedder, None


class FeatureExtractor:
    """Turns prompts into the feature matrix a :class:`FeatureSpec` describes.

    Construct with :meth:`for_spec` (a saved model's spec: fails if its embedder is missing) or
    :meth:`best_available` (training: the embedding when possible, else lexical and flagged).
    """

    def __init__(self, spec: FeatureSpec, embedder: Embedder | None = None) -> None:
        if spec.embedder is not None:
            if embedder is None:
                raise EmbedderUnavailable(f"features need the embedder {spec.embedder!r}")
            if embedder.name != spec.embedder or embedder.dim != spec.embedding_dim:
                raise ValueError(
                    f"features were built with {spec.embedder} ({spec.embedding_dim} dims), "
                    f"not {embedder.name} ({embedder.dim} dims)"
                )
        self.spec = spec
        self._embedder = embedder if spec.embedder is not None else None

    @classmethod
    def best_available(
        cls, embedder: Embedder | None = None, *, use_embeddings: bool = True
    ) -> FeatureExtractor:
        """Embedding + lexical when an embedder is given or the local one loads, else lexical."""
        if not use_embeddings:
            return cls(FeatureSpec())
        reason = None
        if embedder is None:
            embedder, reason = local_embedder_or_reason()
        if embedder is None:
            return cls(FeatureSpec(degraded_reason=reason))
        spec = FeatureSpec(embedder=embedder.name, embedding_dim=embedder.dim)
        return cls(spec, embedder)

    @classmethod
    def for_spec(cls, spec: FeatureSpec, embedder: Embedder | None = None) -> FeatureExtractor:
        """The extractor a saved model needs; loads the local embedder if the spec names one."""
        if spec.embedder is not None and embedder is None:
            embedder, reason = local_embedder_or_reason()
            if embedder is None:
                raise EmbedderUnavailable(f"this router needs {spec.embedder}: {reason}")
        return cls(spec, embedder)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        """Feature matrix, shape ``(len(texts), spec.width)``, float64."""
        lexical = lexical_features(texts, self.spec.lexical)
        if self._embedder is None:
            return lexical
        embedded = np.asarray(self._embedder.embed(list(texts)), dtype=np.float64)
        return np.hstack([embedded, lexical])
