"""JSON text for the store and canonical bytes for keys (:mod:`broker.jsontext`)."""

from __future__ import annotations

import json

from broker import jsontext

PAYLOAD = {
    "messages": [{"role": "user", "content": 'Grüße, 東京 \u2028 "quoted"'}],
    "max_tokens": 64,
    "temperature": 0.7,
    "stop": ["\n\n"],
    "seed": -(2**63),
}


def test_dumps_is_compact_json_that_reads_back_equal():
    text = jsontext.dumps(PAYLOAD)
    assert json.loads(text) == PAYLOAD
    assert text == json.dumps(PAYLOAD, separators=(",", ":"), ensure_ascii=False)


def test_canonical_is_the_standard_librarys_sorted_compact_form():
    """The bytes the cache key was always hashed from: keys already in the cache still match."""
    expected = json.dumps(PAYLOAD, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert jsontext.canonical(PAYLOAD) == expected.encode()


def test_canonical_ignores_key_order():
    reordered = dict(reversed(list(PAYLOAD.items())))
    assert jsontext.canonical(reordered) == jsontext.canonical(PAYLOAD)


def test_integers_beyond_64_bits_are_written_not_refused():
    schema = {"type": "integer", "maximum": 10**30}
    assert json.loads(jsontext.dumps(schema)) == schema
    expected = b'{"maximum":1000000000000000000000000000000,"type":"integer"}'
    assert jsontext.canonical(schema) == expected
    assert jsontext.canonical({"maximum": 10**30 + 1}) != jsontext.canonical(schema)


def test_body_is_the_compact_text_encoded():
    assert jsontext.body(PAYLOAD) == jsontext.dumps(PAYLOAD).encode()
    assert json.loads(jsontext.body({"maximum": 10**30})) == {"maximum": 10**30}
