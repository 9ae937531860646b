"""JSON as the broker writes it: compact text for the result store and provider calls, and one
canonical form for what is hashed into keys. orjson does all three several times faster than
the standard library, which matters where every request of a 50,000-request batch is written
(its payload, a JSON column) and keyed (the response cache's key) at submission, and where a
worker pool sends every call.

orjson refuses integers beyond 64 bits; those (a JSON Schema's ``maximum`` of 10**30, say) go
through the standard library instead, so nothing a request may carry fails here. The two write
the same text for everything else but floats in exponent form (``1e-07`` against ``1e-7``):
each value always takes the same path, so a key stays the key of its value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_CANONICAL = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """``value`` as compact JSON text (keys in the order given)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer over 64 bits (or a type neither knows: json names it)
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def body(value: Any) -> bytes:
    """``value`` as a UTF-8 JSON request body (a provider call's)."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return dumps(value).encode()


def canonical(value: Any) -> bytes:
    """``value`` as UTF-8 JSON with sorted keys and no spaces: equal values, equal bytes."""
    try:
        return orjson.dumps(value, option=_CANONICAL)
    except TypeError:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
