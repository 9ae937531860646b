"""JSON answers, for requests that ask for one (``response_format``, ``output_config.format``).

A real model asked for JSON answers with a JSON object; asked for a schema, with an object that
follows it. The simulator does the same, deterministically: every value is drawn from the
prompt digest and the value's path in the document, so the same request gets the same object.
Objects carry their ``required`` properties (every property, when the schema lists none), with a
value of the declared type: enough for a client's own validation (the SDK's ``parse``, a
pydantic model) to pass, without a full JSON Schema engine. Local ``$ref``s (``#/$defs/...``,
as pydantic writes nested models) are followed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from workers.simulator.text import VOCABULARY, Completion, cut_at_stop, text_tokens

_MAX_DEPTH = 8  # a recursive schema ends in null (or an empty container) past this
_FORMATS = {
    "date": "2024-05-17",
    "date-time": "2024-05-17T09:30:00Z",
    "time": "09:30:00",
    "email": "team@example.com",
    "uri": "https://example.com/answer",
    "uuid": "0f8fad5b-d9cb-469f-a165-70867728950e",
}


def complete_json(
    digest: bytes,
    input_tokens: int,
    max_tokens: int | None,
    stop: list[str] | None,
    schema: Mapping[str, Any] | None,
) -> Completion:
    """:func:`workers.simulator.text.complete` for a JSON answer: :func:`json_text`, counted at
    one token per four bytes, cut at ``max_tokens`` (no longer valid JSON, as with a real
    model: finish reason ``length``) and at a stop sequence."""
    text = json_text(digest, schema)
    capped = max_tokens is not None and max_tokens < text_tokens(text)
    if capped:
        text = text[: 4 * max_tokens]  # ASCII only: json.dumps escapes the rest
    text, found = cut_at_stop(text, stop)
    return Completion(text, input_tokens, text_tokens(text), capped and found is None, found)


def json_text(digest: bytes, schema: Mapping[str, Any] | None) -> str:
    """The answer as JSON text: an object following ``schema``, or, without a schema (OpenAI's
    ``json_object``), ``{"answer": <a sentence>}``."""
    if not schema:
        return json.dumps({"answer": _words(digest, "answer", 12)})
    value = _value(digest, schema, schema, "$", 0)
    return json.dumps(value if isinstance(value, dict) else {"answer": value})


def _draw(digest: bytes, path: str, n: int = 8) -> bytes:
    return hashlib.shake_128(digest + path.encode("utf-8")).digest(n)


def _words(digest: bytes, path: str, most: int) -> str:
    stream = _draw(digest, path, most + 1)
    count = 1 + stream[0] % most
    return " ".join(VOCABULARY[b & 63] for b in stream[1 : count + 1])


def _resolve(root: Mapping[str, Any], schema: Mapping[str, Any]) -> Mapping[str, Any]:
    ref = schema.get("$ref")
    if ref == "#":
        return root
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    target: Any = root
    for part in ref[2:].split("/"):
        target = target.get(part) if isinstance(target, Mapping) else None
    return target if isinstance(target, Mapping) else {}


def _type_of(schema: Mapping[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        kind = kinds[0] if kinds else "null"
    if kind is None and "properties" in schema:
        kind = "object"
    return kind if isinstance(kind, str) else None


def _value(
    digest: bytes, root: Mapping[str, Any], schema: Mapping[str, Any], path: str, depth: int
) -> Any:
    schema = _resolve(root, schema)
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        return schema["enum"][_draw(digest, path)[0] % len(schema["enum"])]
    for combined in ("anyOf", "oneOf", "allOf"):
        options = schema.get(combined)
        if isinstance(options, list) and options:
            usable = [o for o in options if isinstance(o, Mapping) and o.get("type") != "null"]
            return _value(digest, root, (usable or options)[0], path, depth)
    kind = _type_of(schema)
    if depth > _MAX_DEPTH:
        return {} if kind == "object" else [] if kind == "array" else None
    if kind == "object":
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        required = schema.get("required")
        names = required if isinstance(required, list) else list(properties)
        return {
            name: _value(digest, root, properties.get(name) or {}, f"{path}.{name}", depth + 1)
            for name in names
            if isinstance(name, str)
        }
    if kind == "array":
        items = schema.get("items") if isinstance(schema.get("items"), Mapping) else {}
        least = schema.get("minItems") if isinstance(schema.get("minItems"), int) else 1
        count = max(least, 1 + _draw(digest, path)[0] % 2)
        if isinstance(schema.get("maxItems"), int):
            count = min(count, schema["maxItems"])
        return [
            _value(digest, root, items, f"{path}[{i}]", depth + 1) for i in range(count)
        ]
    if kind in ("integer", "number"):
        return _number(schema, int.from_bytes(_draw(digest, path, 2), "big"), kind == "integer")
    if kind == "boolean":
        return bool(_draw(digest, path)[0] & 1)
    if kind == "null":
        return None
    if kind == "string" or kind is None:
        fixed = _FORMATS.get(schema.get("format"))  # type: ignore[arg-type]
        return fixed if fixed is not None else _words(digest, path, 4)
    return None


def _number(schema: Mapping[str, Any], drawn: int, integer: bool) -> int | float:
    """A number within ``minimum``/``maximum`` when given (0..99 otherwise)."""
    low, high = schema.get("minimum"), schema.get("maximum")
    low = low if isinstance(low, int | float) and not isinstance(low, bool) else None
    high = high if isinstance(high, int | float) and not isinstance(high, bool) else None
    if low is None:
        low = 0 if high is None or high >= 0 else high - 99
    if high is None or high < low:
        high = low + 99
    if integer:
        low, high = int(-(-low // 1)), int(high // 1)
        return low + drawn % (high - low + 1) if high >= low else low
    return round(low + (drawn % 1001) / 1000 * (high - low), 3)
