"""Where and how to call OpenAI-compatible Chat Completions and Embeddings endpoints."""

from __future__ import annotations

PATH = "/v1/chat/completions"
EMBEDDINGS_PATH = "/v1/embeddings"
#: Headers carrying the provider's request id, most specific first.
REQUEST_ID_HEADERS = ("x-request-id",)


def headers(api_key: str | None) -> dict[str, str]:
    """Bearer auth; no ``Authorization`` at all for keyless servers (vLLM, Ollama, simulator)."""
    out = {"accept": "application/json"}
    if api_key is not None:
        out["authorization"] = f"Bearer {api_key}"
    return out
