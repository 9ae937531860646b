"""The simulator's JSON answers and stop sequences, as pure functions (no server)."""

from __future__ import annotations

import hashlib
import json

from workers.simulator.structured import complete_json, json_text
from workers.simulator.text import complete, cut_at_stop, text_tokens

DIGEST = hashlib.sha256(b"a prompt").digest()
OTHER = hashlib.sha256(b"another prompt").digest()
RIVER = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "length_km": {"type": "integer", "minimum": 100, "maximum": 200},
        "share": {"type": "number", "minimum": 0, "maximum": 1},
        "navigable": {"type": "boolean"},
        "countries": {"type": "array", "items": {"type": "string"}, "minItems": 2},
        "kind": {"enum": ["river", "stream"]},
        "mouth": {"$ref": "#/$defs/Place"},
        "source": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/Place"}]},
        "seen": {"type": "string", "format": "date"},
        "nickname": {"type": "string"},
    },
    "required": [
        "name",
        "length_km",
        "share",
        "navigable",
        "countries",
        "kind",
        "mouth",
        "source",
        "seen",
    ],
    "$defs": {
        "Place": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "lat": {"type": "number"}},
            "required": ["city", "lat"],
        }
    },
}


def test_a_schema_answer_has_every_required_property_with_its_type():
    answer = json.loads(json_text(DIGEST, RIVER))
    assert set(answer) == set(RIVER["required"])  # nickname is optional: left out
    assert isinstance(answer["name"], str) and answer["name"]
    assert isinstance(answer["length_km"], int) and 100 <= answer["length_km"] <= 200
    assert isinstance(answer["share"], float) and 0 <= answer["share"] <= 1
    assert isinstance(answer["navigable"], bool)
    assert len(answer["countries"]) >= 2 and all(isinstance(c, str) for c in answer["countries"])
    assert answer["kind"] in ("river", "stream")
    for place in (answer["mouth"], answer["source"]):
        assert isinstance(place["city"], str) and isinstance(place["lat"], int | float)
    assert answer["seen"] == "2024-05-17"


def test_json_answers_are_deterministic_per_prompt():
    assert json_text(DIGEST, RIVER) == json_text(DIGEST, RIVER)
    assert json_text(DIGEST, RIVER) != json_text(OTHER, RIVER)
    assert json_text(DIGEST, None) == json_text(DIGEST, {})


def test_without_a_schema_the_answer_is_any_object():
    answer = json.loads(json_text(DIGEST, None))
    assert list(answer) == ["answer"] and isinstance(answer["answer"], str)


def test_a_recursive_schema_ends():
    tree = {"type": "object", "properties": {"child": {"$ref": "#"}}, "required": ["child"]}
    depth, node = 0, json.loads(json_text(DIGEST, tree))
    while node:
        node, depth = node["child"], depth + 1
    assert 1 < depth < 12


def test_a_json_completion_counts_four_bytes_a_token_and_is_cut_like_text():
    whole = complete_json(DIGEST, 9, None, None, RIVER)
    assert whole.output_tokens == text_tokens(whole.text) and not whole.capped
    assert json.loads(whole.text)
    capped = complete_json(DIGEST, 9, 5, None, RIVER)
    assert capped.capped and capped.text == whole.text[:20] and capped.output_tokens == 5
    cut = complete_json(DIGEST, 9, None, ['"navigable"'], RIVER)
    assert cut.stop_sequence == '"navigable"' and not cut.capped
    assert whole.text.startswith(cut.text) and '"navigable"' not in cut.text


def test_stop_cuts_before_the_earliest_sequence():
    text = "Alpha beta. Gamma delta."
    assert cut_at_stop(text, ["delta", "beta"]) == ("Alpha", "beta")
    assert cut_at_stop(text, ["zeta"]) == (text, None)
    assert cut_at_stop(text, None) == (text, None)
    whole = complete(DIGEST, 9, None)
    word = whole.text.split()[4]
    cut = complete(DIGEST, 9, None, ["zzz", word])
    assert cut.stop_sequence == word and cut.text == whole.text[: whole.text.find(word)].rstrip()
    assert cut.output_tokens == len(cut.text.split()) and not cut.capped
