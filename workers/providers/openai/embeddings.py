"""Request mapping and response parsing for OpenAI-compatible Embeddings (``/v1/embeddings``).

The broker always asks for ``float`` vectors and keeps them as the answer's text (a JSON array
of arrays, one per input, in input order), so results, reports and the ledger need nothing
new; the drop-in surface writes them back as floats or base64, as its caller asked. Usage is
input tokens only.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx

from broker.config.broker_toml import ModelConfig
from broker.errors import MalformedResponse
from workers.providers.base import (
    BodyError,
    Completion,
    HttpCall,
    decode_json_object,
    field,
    request_id,
    token_count,
)
from workers.providers.openai import api

FINISH_REASON = "stop"


def build(model: ModelConfig, payload: dict, api_key: str | None) -> HttpCall:
    """The stored texts, as a list; ``dimensions`` only when the request gave it."""
    body: dict[str, Any] = {
        "model": model.provider_model_id,
        "input": list(payload["input"]),
        "encoding_format": "float",
    }
    if payload.get("dimensions") is not None:
        body["dimensions"] = payload["dimensions"]
    return HttpCall(path=api.EMBEDDINGS_PATH, headers=api.headers(api_key), json=body, reader=parse)


def parse(status: int, headers: httpx.Headers, body: bytes) -> Completion:
    """A ``list`` of ``embedding`` objects as a :class:`Completion` whose text is the vectors
    (ordered by ``index``); a missing, repeated or non-numeric entry is malformed."""
    rid = request_id(headers, *api.REQUEST_ID_HEADERS)
    try:
        data = decode_json_object(headers, body)
        items = field(data, "data", list)
        if not items:
            raise BodyError("field 'data' is an empty array")
        vectors: dict[int, list[float]] = {}
        for i, item in enumerate(items):
            index = field(data, f"data.{i}.index", int)
            vector = field(data, f"data.{i}.embedding", list)
            if index in vectors:
                raise BodyError(f"data[{i}]: index {index} appears twice")
            if not vector or not all(_number(v) for v in vector):
                raise BodyError(f"data[{i}].embedding: expected a non-empty array of numbers")
            vectors[index] = [float(v) for v in vector]
        if sorted(vectors) != list(range(len(vectors))):
            raise BodyError(f"data indexes are {sorted(vectors)}, expected 0..{len(vectors) - 1}")
        prompt = token_count(data, "usage.prompt_tokens")
        text = json.dumps([vectors[i] for i in range(len(vectors))], separators=(",", ":"))
        return Completion(
            text=text,
            finish_reason=FINISH_REASON,
            input_tokens=prompt,
            cached_input_tokens=0,
            output_tokens=0,
            provider_request_id=rid,
            model=field(data, "model", str),
        )
    except BodyError as exc:
        raise MalformedResponse(
            f"HTTP {status}: {exc}", provider="openai", status=status, provider_request_id=rid
        ) from exc


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
