"""OpenAI Embeddings ⇄ the broker's request and result.

:func:`embeddings_request` reads a ``POST /v1/embeddings`` body (or a batch line's ``body``)
into an embedding :class:`RequestIn` (``input`` instead of ``messages``);
:func:`embeddings_response` writes a finished one as the ``list`` of ``embedding`` objects the
SDK validates. The worker keeps the vectors as floats (the answer's text is their JSON); they are
written back as floats or, for ``encoding_format: base64`` (what the SDK asks for by default),
as the base64 of their little-endian float32 bytes, as OpenAI does.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import Mapping
from typing import Any

from broker.dropin.openai_wire import broker_facts, parse_request
from broker.errors import InvalidRequest
from broker.schemas.http import RequestIn
from broker.store import Request

ENCODINGS = ("float", "base64")


def embeddings_request(body: Any, custom_id: str, where: str = "") -> RequestIn:
    """The broker request for an embeddings body; 400 naming the field when it is wrong.
    ``where`` prefixes field names (``body.`` in a batch line)."""
    if not isinstance(body, Mapping):
        raise InvalidRequest(f"{where or 'body'}: must be a JSON object", field=where or "body")
    fields: dict[str, Any] = {
        "custom_id": custom_id,
        "model": body.get("model"),
        "input": _texts(body.get("input"), f"{where}input"),
    }
    encoding = body.get("encoding_format")
    if encoding is not None and encoding not in ENCODINGS:
        raise InvalidRequest(
            f"{where}encoding_format: 'float' or 'base64', not {encoding!r}",
            field=f"{where}encoding_format",
        )
    fields["encoding_format"] = encoding
    if body.get("dimensions") is not None:
        fields["dimensions"] = body["dimensions"]
    if body.get("user"):
        fields["metadata"] = {"user_id": body["user"]}
    return parse_request(fields, where)


def _texts(value: Any, at: str) -> list[str]:
    """``input`` as a list of texts: a string, or a list of strings. Token arrays are refused
    (the broker caches, prices and redacts text)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise InvalidRequest(
            f"{at}: a string or a non-empty list of strings is required", field=at
        )
    for i, item in enumerate(items):
        if isinstance(item, int | list) and not isinstance(item, bool):
            raise InvalidRequest(
                f"{at}: token arrays are not supported by the broker; send the text",
                field=at,
            )
        if not isinstance(item, str) or not item:
            raise InvalidRequest(f"{at}[{i}]: must be a non-empty string", field=f"{at}[{i}]")
    return items


def vectors_of(row: Request) -> list[list[float]]:
    """The vectors the worker kept, one per input, in input order."""
    return json.loads(row.output or "[]")


def encode_base64(vector: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings_response(row: Request) -> dict[str, Any]:
    """A succeeded embedding request as OpenAI's ``CreateEmbeddingResponse``, its vectors in
    the ``encoding_format`` the request asked for (float when it did not say)."""
    as_base64 = (row.payload or {}).get("encoding_format") == "base64"
    tokens = (row.input_tokens or 0) + (row.cached_input_tokens or 0)
    return {
        "object": "list",
        "data": [
            {
                "object": "embedding",
                "index": index,
                "embedding": encode_base64(vector) if as_base64 else vector,
            }
            for index, vector in enumerate(vectors_of(row))
        ],
        "model": row.model_used or row.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        "x_broker": broker_facts(row),
    }


def is_embedding(row: Request) -> bool:
    return (row.payload or {}).get("kind") == "embedding"
