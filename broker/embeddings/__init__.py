"""Text embedders: one small Protocol, a local model and a remote OpenAI-compatible endpoint.

Why a Protocol: the semantic cache and the learned router only need "texts in, unit vectors
out" plus a stable name to find the calibration that belongs to that embedder (a cosine
threshold means nothing across embedders). Implementations:

- :class:`broker.embeddings.local.LocalEmbedder` — all-MiniLM-L6-v2, offline, optional extra.
- :class:`broker.embeddings.remote.HttpEmbedder` — ``POST {base_url}/embeddings``, billed.

Errors::

    EmbedderError
    ├── EmbedderUnavailable   the optional dependencies / model files are not installed
    └── EmbeddingFailed       a remote call failed or returned something we cannot read
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

__all__ = [
    "Embedder",
    "EmbedderError",
    "EmbedderUnavailable",
    "EmbeddingFailed",
    "normalise_rows",
]

INSTALL_HINT = "pip install 'inference-broker[embeddings]'"


class EmbedderError(Exception):
    """Root of the errors an embedder raises on purpose."""


class EmbedderUnavailable(EmbedderError):
    """The embedder cannot be used here: its optional dependencies or model are missing."""


class EmbeddingFailed(EmbedderError):
    """An embedding call failed (network, HTTP status, or a response we cannot read)."""


@runtime_checkable
class Embedder(Protocol):
    """Texts in, L2-normalised float32 rows out.

    ``name`` identifies the model (and therefore its calibration file); ``dim`` is the row
    length. ``embed`` returns an array of shape ``(len(texts), dim)``.
    """

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray: ...


def normalise_rows(matrix: np.ndarray) -> np.ndarray:
    """Return ``matrix`` as float32 with every row scaled to unit length (zero rows stay 0)."""
    out = np.asarray(matrix, dtype=np.float32)
    if out.ndim == 1:
        out = out.reshape(1, -1)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)
