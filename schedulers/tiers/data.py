"""Labelled routing data: prompts with whether the cheaper tier's answer was acceptable.

Two formats, both accepted by :func:`load_training_rows` (and so by
``inference-broker router train FILE``):

- **JSONL**: one object per line, ``{"prompt": "...", "acceptable": true|false}``, optionally
  with ``"weak_correct"`` and ``"strong_correct"`` (booleans; when both are given ``acceptable``
  may be left out and is derived), and ``"group"`` (a string: a topic, a feature; what
  ``router train --hold-out groups`` holds out together). Blank lines are skipped; anything
  else that is not such an object is an error naming the file and line.
- **a routing-data directory** in the layout of ``../shared/data/routing`` (RouteLLM's evals):
  ``mmlu/mmlu_<subject>.csv`` and/or ``gsm8k_responses.csv``, each with columns ``prompt``,
  the weak model's and the strong model's correctness (``True``/``False``).

"Acceptable" means the cheaper tier loses nothing against the flagship: the weak model was
right, or both were wrong. Why count both-wrong as acceptable: routing cannot buy a correct
answer there, so paying for the flagship is waste; ranking by P(not acceptable) = P(weak wrong
and strong right) is exactly the order that maximises accuracy for a given flagship share.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "STRONG_COLUMN",
    "WEAK_COLUMN",
    "LabelledQuestion",
    "SourceFile",
    "TrainingDataError",
    "TrainingRow",
    "TrainingSet",
    "as_rows",
    "load_routing_dir",
    "load_training_rows",
]

WEAK_COLUMN = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_COLUMN = "gpt-4-1106-preview"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class TrainingDataError(ValueError):
    """A training file or directory cannot be read; the message names the file (and line)."""


class TrainingRow(NamedTuple):
    """One labelled prompt. A plain ``(prompt, acceptable)`` tuple is a valid row too."""

    prompt: str
    acceptable: bool
    weak_correct: bool | None = None
    strong_correct: bool | None = None
    group: str | None = None  # rows sharing a group are held out together in validation


@dataclass(frozen=True)
class LabelledQuestion:
    """A question with both models' correctness; ``group`` is its subject (MMLU) or itself."""

    prompt: str
    weak_correct: bool
    strong_correct: bool
    dataset: str
    group: str

    @property
    def acceptable(self) -> bool:
        return self.weak_correct or not self.strong_correct

    def row(self) -> TrainingRow:
        return TrainingRow(
            self.prompt, self.acceptable, self.weak_correct, self.strong_correct, self.group
        )


@dataclass(frozen=True)
class SourceFile:
    """A file training read: where, its sha256 and how many rows it gave."""

    path: str
    sha256: str
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "rows": self.rows}


@dataclass(frozen=True)
class TrainingSet:
    """Rows plus where they came from (written into the saved model)."""

    rows: list[TrainingRow]
    sources: tuple[SourceFile, ...] = ()

    def describe(self) -> dict[str, Any]:
        return {"rows": len(self.rows), "files": [source.to_dict() for source in self.sources]}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _flag(value: Any, where: str, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TrainingDataError(f"{where}: {name} must be true or false, got {value!r}")


def _read_csv(path: Path, dataset: str, group: str | None) -> list[LabelledQuestion]:
    csv.field_size_limit(1 << 30)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"prompt", WEAK_COLUMN, STRONG_COLUMN} - set(reader.fieldnames or ())
        if missing:
            raise TrainingDataError(f"{path}: missing columns {sorted(missing)}")
        out = []
        for index, record in enumerate(reader):
            where = f"{path}: row {index + 2}"
            prompt = record["prompt"] or ""
            if not prompt.strip():
                raise TrainingDataError(f"{where}: empty prompt")
            out.append(
                LabelledQuestion(
                    prompt=prompt,
                    weak_correct=_flag(record[WEAK_COLUMN], where, WEAK_COLUMN),
                    strong_correct=_flag(record[STRONG_COLUMN], where, STRONG_COLUMN),
                    dataset=dataset,
                    group=f"{dataset}:{group if group is not None else index}",
                )
            )
    return out


def load_routing_dir(
    directory: str | Path,
) -> tuple[dict[str, list[LabelledQuestion]], tuple[SourceFile, ...]]:
    """Questions by dataset (``"mmlu"``, ``"gsm8k"``; only those present) and the files read.

    MMLU questions are grouped by subject (the file name after ``mmlu_``), GSM8K questions
    each form their own group.
    """
    root = Path(directory)
    if not root.is_dir():
        raise TrainingDataError(f"{root}: not a directory")
    datasets: dict[str, list[LabelledQuestion]] = {}
    sources: list[SourceFile] = []
    for path in sorted((root / "mmlu").glob("*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        questions = _read_csv(path, "mmlu", subject)
        datasets.setdefault("mmlu", []).extend(questions)
        sources.append(SourceFile(str(path.relative_to(root)), _sha256(path), len(questions)))
    gsm8k = root / "gsm8k_responses.csv"
    if gsm8k.exists():
        questions = _read_csv(gsm8k, "gsm8k", None)
        datasets["gsm8k"] = questions
        sources.append(SourceFile(gsm8k.name, _sha256(gsm8k), len(questions)))
    if not datasets:
        raise TrainingDataError(f"{root}: no mmlu/*.csv and no gsm8k_responses.csv")
    return datasets, tuple(sources)


def _jsonl_row(line: str, where: str) -> TrainingRow:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise TrainingDataError(f"{where}: not JSON ({exc.msg})") from exc
    if not isinstance(record, dict):
        raise TrainingDataError(f"{where}: expected an object, got {type(record).__name__}")
    prompt = record.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise TrainingDataError(f"{where}: 'prompt' must be a non-empty string")
    weak = record.get("weak_correct")
    strong = record.get("strong_correct")
    weak = None if weak is None else _flag(weak, where, "weak_correct")
    strong = None if strong is None else _flag(strong, where, "strong_correct")
    if "acceptable" in record:
        if not isinstance(record["acceptable"], bool):
            raise TrainingDataError(f"{where}: 'acceptable' must be true or false")
        acceptable = record["acceptable"]
    elif weak is not None and strong is not None:
        acceptable = weak or not strong
    else:
        raise TrainingDataError(
            f"{where}: missing 'acceptable' (or both 'weak_correct' and 'strong_correct')"
        )
    group = record.get("group")
    if group is not None and (not isinstance(group, str) or not group):
        raise TrainingDataError(f"{where}: 'group' must be a non-empty string when given")
    return TrainingRow(prompt, acceptable, weak, strong, group)


def _load_jsonl(path: Path) -> list[TrainingRow]:
    rows = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                rows.append(_jsonl_row(line, f"{path}:{number}"))
    if not rows:
        raise TrainingDataError(f"{path}: no rows")
    return rows


def load_training_rows(path: str | Path) -> TrainingSet:
    """Read a JSONL file or a routing-data directory (see the module docstring)."""
    target = Path(path)
    if target.is_dir():
        datasets, sources = load_routing_dir(target)
        rows = [question.row() for questions in datasets.values() for question in questions]
        return TrainingSet(rows, sources)
    if not target.exists():
        raise TrainingDataError(f"{target}: no such file or directory")
    rows = _load_jsonl(target)
    return TrainingSet(rows, (SourceFile(target.name, _sha256(target), len(rows)),))


def as_rows(rows: Iterable[Any]) -> list[TrainingRow]:
    """Normalise ``(prompt, acceptable[, weak, strong])`` tuples into :class:`TrainingRow`."""
    return [row if isinstance(row, TrainingRow) else TrainingRow(*row) for row in rows]
