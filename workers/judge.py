"""A cascade's LLM judge: a small model reads a cheaper tier's answer and says whether it
answers the request.

The deterministic checks (:mod:`workers.validators`) catch answers that are visibly wrong in
form; the judge reads the ones they accept. It is asked for a JSON verdict under a schema
(structured outputs, which both wire formats honour), at temperature 0, with at most
``judge_max_tokens`` to write. Its call is made within the attempt it judges, through the
breakers, and billed to the request with that attempt; the reservation made at dispatch
covers it (:func:`schedulers.budgets.cost_bound`).

A judge that cannot be asked (its provider failing, a breaker open) or whose verdict does not
parse leaves the answer standing, as it would stand without a judge, and the recorded reason
says so: the judge may only ever move a request up a tier, never fail it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from workers.attempts import AttemptResult
from workers.validators import Verdict

CHECK = "judge"
INSTRUCTIONS = (
    "You check answers written by a smaller model. Read the request and the answer. Reply "
    "with accept when the answer fully and correctly does what the request asks, and with "
    "escalate when it is wrong, incomplete, evasive or ignores an instruction; give a short "
    "reason."
)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "verdict": {"type": "string", "enum": ["accept", "escalate"]},
        "reason": {"type": "string"},
    },
    "required": ["verdict", "reason"],
    "additionalProperties": False,
}


def payload(asked: Mapping[str, Any], answer: str, max_tokens: int) -> dict[str, Any]:
    """The judge's request: the instructions, then the request's turns and the answer."""
    turns = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in asked.get("messages", []))
    return {
        "messages": [
            {"role": "system", "content": INSTRUCTIONS},
            {
                "role": "user",
                "content": f"<request>\n{turns}\n</request>\n\n<answer>\n{answer}\n</answer>",
            },
        ],
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "verdict", "schema": SCHEMA, "strict": True},
        },
    }


def verdict_of(result: AttemptResult) -> Verdict:
    """The judge's verdict; its failure or an unreadable verdict leaves the answer standing."""
    if result.completion is None:
        return Verdict(True, CHECK, f"the judge could not be asked ({result.error}): kept")
    try:
        said = json.loads(result.completion.text)
        verdict, reason = said["verdict"], str(said.get("reason", ""))[:500]
    except (ValueError, TypeError, KeyError):
        return Verdict(True, CHECK, "the judge's verdict did not parse: kept")
    if verdict == "escalate":
        return Verdict(False, CHECK, f"the judge escalates: {reason}")
    if verdict == "accept":
        return Verdict(True, CHECK, f"the judge accepts: {reason}")
    return Verdict(True, CHECK, f"the judge's verdict {verdict!r} is neither: kept")
