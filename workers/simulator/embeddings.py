"""OpenAI Embeddings as the simulator speaks it: ``POST /v1/embeddings``.

Shapes follow the official SDK's ``CreateEmbeddingResponse`` field for field. The vectors are
deterministic: each input's vector is drawn from a SHAKE-256 stream seeded by the model and the
input, then scaled to unit length, so the same text always gets the same vector (and tests can
check what the broker passes through). ``encoding_format: base64`` writes each vector as the
base64 of its little-endian float32 bytes, as OpenAI does (the SDK asks for it by default and
decodes it); ``float`` (the default) as a JSON array, rounded to 8 decimals.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import struct
from collections.abc import Mapping

from workers.simulator.openai_format import OpenAIFormat
from workers.simulator.text import Completion, text_tokens
from workers.simulator.wire import EmbeddingAsk, ParsedRequest, SimError, decode_object, require

#: Native vector length per model; others get ``DEFAULT_DIMENSIONS``.
NATIVE_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
DEFAULT_DIMENSIONS = 1536
MAX_INPUTS = 2048
DECIMALS = 8


def vector(model: str, item: str | list[int], dimensions: int) -> list[float]:
    """The unit vector of one input: stable across processes, runs and Python versions."""
    material = json.dumps([model, item], separators=(",", ":"), ensure_ascii=False)
    stream = hashlib.shake_256(material.encode("utf-8")).digest(2 * dimensions)
    raw = [v / 32767.5 - 1.0 for v in struct.unpack(f">{dimensions}H", stream)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, DECIMALS) for v in raw]


def encode_base64(values: list[float]) -> str:
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def _invalid(message: str, param: str) -> SimError:
    return SimError(400, message, param=param, code="invalid_value")


def _inputs(data: dict) -> list[str | list[int]]:
    """``input``: a string, a list of strings, a token array or a list of token arrays."""
    raw = require(data, "input", (str, list), "a string or an array")
    items = [raw] if isinstance(raw, str) else raw
    if items and all(isinstance(t, int) and not isinstance(t, bool) for t in items):
        items = [items]  # one token array
    if not items:
        raise _invalid("'$.input' is invalid: an empty array.", "input")
    if len(items) > MAX_INPUTS:
        raise _invalid(f"'$.input' is invalid: at most {MAX_INPUTS} inputs.", "input")
    for i, item in enumerate(items):
        tokens = isinstance(item, list) and item and all(
            isinstance(t, int) and not isinstance(t, bool) for t in item
        )
        if not (isinstance(item, str) and item) and not tokens:
            raise _invalid(
                f"'$.input[{i}]' is invalid: expected a non-empty string or token array.",
                f"input[{i}]",
            )
    return items


class EmbeddingsFormat(OpenAIFormat):
    """The OpenAI wire (auth, errors, limits, headers) with the embeddings body."""

    def parse(self, body: bytes, headers: Mapping[str, str]) -> ParsedRequest:
        data = decode_object(body)
        model = require(data, "model", str, "a string")
        if not model:
            raise _invalid("Invalid 'model': empty string.", "model")
        items = _inputs(data)
        native = NATIVE_DIMENSIONS.get(model, DEFAULT_DIMENSIONS)
        dimensions = data.get("dimensions")
        if dimensions is None:
            dimensions = native
        elif isinstance(dimensions, bool) or not isinstance(dimensions, int):
            raise _invalid("Invalid type for 'dimensions': expected an integer.", "dimensions")
        elif not 1 <= dimensions <= native:
            raise _invalid(
                f"Invalid 'dimensions': {model} takes 1 to {native}, not {dimensions}.",
                "dimensions",
            )
        encoding = data.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _invalid(
                f"Invalid value for 'encoding_format': {encoding!r}; 'float' or 'base64'.",
                "encoding_format",
            )
        tokens = sum(text_tokens(i) if isinstance(i, str) else len(i) for i in items)
        material = json.dumps([model, items, dimensions], separators=(",", ":"))
        return ParsedRequest(
            model=model,
            max_tokens=0,
            digest=hashlib.sha256(material.encode("utf-8")).digest(),
            input_tokens=tokens,
            embedding=EmbeddingAsk(tuple(items), dimensions, encoding == "base64"),
        )

    def success_payload(self, request: ParsedRequest, completion: Completion) -> dict:
        ask = request.embedding
        assert ask is not None  # parse() made it
        data = []
        for index, item in enumerate(ask.inputs):
            values = vector(request.model, item, ask.dimensions)
            embedding = encode_base64(values) if ask.base64 else values
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = completion.input_tokens
        return {
            "object": "list",
            "data": data,
            "model": request.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
