"""An OpenAI-compatible embeddings endpoint (``POST {base_url}/embeddings``).

The call is a provider call like any other: the caller bills and attributes it to the team,
so the embedder exposes the token usage of its last call (:attr:`HttpEmbedder.last_usage`)
and of every call it has made (:attr:`HttpEmbedder.total_prompt_tokens`). The httpx client is
passed in, so timeouts, retries and connection pooling are the shared call path's business.
Any transport error, non-2xx status or unreadable body becomes :class:`EmbeddingFailed`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import httpx
import numpy as np

from broker.embeddings import EmbeddingFailed, normalise_rows

__all__ = ["EmbeddingUsage", "HttpEmbedder"]


@dataclass(frozen=True, slots=True)
class EmbeddingUsage:
    """Tokens one embeddings call consumed, as the provider reported them."""

    model: str
    prompt_tokens: int
    inputs: int


class HttpEmbedder:
    """Embeddings from an OpenAI-compatible endpoint, returned as unit float32 rows.

    ``dim`` is learnt from the first response when not given (0 until then).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        model: str,
        client: httpx.Client,
        *,
        dim: int = 0,
        batch_size: int = 256,
    ) -> None:
        self.name = model
        self.dim = dim
        self._url = base_url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"}
        self._model = model
        self._client = client
        self._batch_size = batch_size
        self._lock = threading.Lock()
        self._last_usage: EmbeddingUsage | None = None
        self._total_prompt_tokens = 0

    @property
    def last_usage(self) -> EmbeddingUsage | None:
        """Usage of the most recent ``embed`` call (all of its batches), or None before any."""
        return self._last_usage

    @property
    def total_prompt_tokens(self) -> int:
        """Prompt tokens over every call this embedder made."""
        return self._total_prompt_tokens

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed ``texts`` in batches; rows come back in input order, L2-normalised."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        rows: list[np.ndarray] = []
        tokens = 0
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start : start + self._batch_size])
            matrix, used = self._call(batch)
            rows.append(matrix)
            tokens += used
        out = normalise_rows(np.vstack(rows))
        with self._lock:
            if not self.dim:
                self.dim = int(out.shape[1])
            self._last_usage = EmbeddingUsage(self._model, tokens, len(texts))
            self._total_prompt_tokens += tokens
        return out

    def _call(self, batch: list[str]) -> tuple[np.ndarray, int]:
        try:
            response = self._client.post(
                self._url, headers=self._headers, json={"model": self._model, "input": batch}
            )
        except httpx.HTTPError as exc:
            raise EmbeddingFailed(f"embeddings call to {self._url} failed: {exc}") from exc
        if response.status_code // 100 != 2:
            raise EmbeddingFailed(
                f"embeddings call to {self._url} returned HTTP {response.status_code}: "
                f"{response.text[:200]}"
            )
        try:
            body = response.json()
            data = sorted(body["data"], key=lambda item: int(item.get("index", 0)))
            matrix = np.asarray([item["embedding"] for item in data], dtype=np.float32)
            tokens = int((body.get("usage") or {}).get("prompt_tokens", 0))
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingFailed(f"unreadable embeddings response from {self._url}") from exc
        if matrix.ndim != 2 or matrix.shape[0] != len(batch):
            raise EmbeddingFailed(
                f"embeddings response from {self._url} has {matrix.shape[0]} rows "
                f"for {len(batch)} inputs"
            )
        if self.dim and matrix.shape[1] != self.dim:
            raise EmbeddingFailed(f"expected dimension {self.dim}, got {matrix.shape[1]}")
        return matrix, tokens
