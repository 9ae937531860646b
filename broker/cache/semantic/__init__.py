"""The semantic cache's core: guard, decision rule, shared vector index.

Only the final user turn is compared by meaning; everything else must match exactly (the
caller builds the scope from it). A candidate found by :mod:`.index` is served only when
:mod:`.guard` finds no meaning-flipping difference and :mod:`.decision` says its estimated
probability of being a wrong answer fits the operator's wrong-hit rate for that embedder.

Errors::

    SemanticCacheError
    ├── CacheUnavailable      Redis is down or misbehaving: take the plain (uncached) path
    └── CalibrationError      no usable calibration for this embedder
"""

from __future__ import annotations

__all__ = ["CacheUnavailable", "CalibrationError", "SemanticCacheError"]


class SemanticCacheError(Exception):
    """Root of the errors the semantic cache raises on purpose."""


class CacheUnavailable(SemanticCacheError):
    """The cache backend cannot be used right now; callers go to the provider instead."""


class CalibrationError(SemanticCacheError):
    """A calibration file is missing, unreadable or for another embedder."""
