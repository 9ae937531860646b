"""Recorded answers: the simulator answers a known prompt with what a real model answered.

``BROKER_SIM_REPLAY_PATH`` (or ``replay_path`` through ``/_sim/config``) names a CSV in the
layout of RouteLLM's ``gsm8k_responses.csv`` (``../shared/data/routing``): a ``prompt`` column
and, per model, a ``<model>_response`` column. Models listed in ``replay_strong_models`` (the
provider model ids of a route's flagship tier) answer with ``replay_strong_column``'s answer,
every other model with ``replay_weak_column``'s. A prompt is recognised whole, or by its first
paragraph (so an instruction appended after a blank line still matches). Anything else gets
the usual generated text.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from workers.simulator.text import Completion


@functools.lru_cache(maxsize=4)
def load(path: str, weak_column: str, strong_column: str) -> dict[str, tuple[str, str]]:
    """prompt → (weak answer, strong answer)."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle)
        missing = {"prompt", weak_column, strong_column} - set(rows.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        return {row["prompt"].strip(): (row[weak_column], row[strong_column]) for row in rows}


def answer(
    table: dict[str, tuple[str, str]],
    model: str,
    prompt: str | None,
    strong_models: list[str],
    input_tokens: int,
    max_tokens: int | None,
) -> Completion | None:
    if not prompt:
        return None
    recorded = table.get(prompt.strip()) or table.get(prompt.strip().split("\n\n", 1)[0].strip())
    if recorded is None:
        return None
    text = recorded[1] if model in strong_models else recorded[0]
    words = text.split()
    capped = max_tokens is not None and len(words) > max_tokens
    if capped:
        text = " ".join(words[:max_tokens])
    return Completion(
        text.strip(), input_tokens, min(len(words), max_tokens or len(words)), capped, None
    )
