"""Labelled pairs in, recall / wrong-hit rate / precision out (for the eval and calibrate CLIs).

A pairs file is JSON lines (gzip or plain) of ``{"a": str, "b": str, "duplicate": bool}``,
the format of ``shared/data/qqp/pairs_dev.jsonl.gz``. ``recall`` is the share of duplicates
served, ``false_hit_rate`` the share of non-duplicates served (a wrong answer each), and
``precision`` the share of served hits that were right.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from broker.cache.semantic.decision import Calibration, LabelledPair, calibrate, split_part
from broker.embeddings import Embedder

__all__ = ["calibrate_file", "embed_pairs", "evaluate", "file_sha256", "metrics", "read_pairs"]

BASELINE_THRESHOLDS = (0.92, 0.95)


def read_pairs(path: str | Path) -> list[LabelledPair]:
    """Every ``(a, b, duplicate)`` of a pairs file; blank lines ignored."""
    raw = Path(path).read_bytes()
    text = gzip.decompress(raw).decode("utf-8") if raw[:2] == b"\x1f\x8b" else raw.decode("utf-8")
    out: list[LabelledPair] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append((str(row["a"]), str(row["b"]), bool(row["duplicate"])))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a pair line ({exc})") from exc
    return out


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def embed_pairs(
    pairs: Sequence[LabelledPair], embedder: Embedder
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row-aligned embeddings of every pair's two texts and their cosines under ``embedder``
    (each distinct text embedded once)."""
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    index = {t: i for i, t in enumerate(texts)}
    vectors = embedder.embed(texts)
    ia = np.fromiter((index[a] for a, _, _ in pairs), dtype=np.int64, count=len(pairs))
    ib = np.fromiter((index[b] for _, b, _ in pairs), dtype=np.int64, count=len(pairs))
    va, vb = vectors[ia], vectors[ib]
    return va, vb, np.einsum("ij,ij->i", va, vb)


def cosines(pairs: Sequence[LabelledPair], embedder: Embedder) -> np.ndarray:
    """Cosine of every pair under ``embedder`` (each distinct text embedded once)."""
    return embed_pairs(pairs, embedder)[2]


def metrics(served: np.ndarray, duplicate: np.ndarray) -> dict[str, float | int]:
    tp = int((served & duplicate).sum())
    fp = int((served & ~duplicate).sum())
    n_pos, n_neg = int(duplicate.sum()), int((~duplicate).sum())
    return {
        "recall": tp / n_pos if n_pos else 0.0,
        "false_hit_rate": fp / n_neg if n_neg else 0.0,
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "hits": tp + fp,
        "wrong_hits": fp,
    }


def evaluate(
    pairs: Sequence[LabelledPair], embedder: Embedder, calibration: Calibration, target: float
) -> dict[str, Any]:
    """The decision rule beside fixed cosine thresholds, on the same pairs and embedder.

    The rule gets the pair's vectors, as the broker passes them, so the pair head decides
    when the calibration has one.
    """
    va, vb, cos = embed_pairs(pairs, embedder)
    duplicate = np.array([d for _, _, d in pairs], dtype=bool)
    decisions = [
        calibration.decide(a, b, float(c), target, vectors=(u, v))
        for (a, b, _), c, u, v in zip(pairs, cos, va, vb, strict=True)
    ]
    served = np.array([d.hit for d in decisions], dtype=bool)
    point = calibration.operating_point(target)
    result: dict[str, Any] = {
        "embedder": embedder.name,
        "rule": "pair head" if calibration.has_head else "cosine + lexical",
        "target": target,
        "estimated_false_hit_rate": point.upper_false_hit_rate if point else None,
        **metrics(served, duplicate),
        "vetoed_by_guard": sum(
            not d.reason.startswith(("calibrated", "no calibrated")) for d in decisions
        ),
        "n_pairs": len(pairs),
        "n_duplicates": int(duplicate.sum()),
        "n_non_duplicates": int((~duplicate).sum()),
        "baselines": {f"{t:.2f}": metrics(cos >= t, duplicate) for t in BASELINE_THRESHOLDS},
    }
    return result


def holdout(pairs: Sequence[LabelledPair], calibration: Calibration) -> list[LabelledPair]:
    """The pairs the calibration's hash split did not use (part 1 of its salt)."""
    salt = calibration.split.get("salt")
    if not salt:
        raise ValueError("this calibration records no hash split; --holdout does not apply")
    part = int(calibration.split.get("part", 0))
    return [p for p in pairs if split_part(p[0], p[1], salt) != part]


def calibrate_file(
    path: str | Path,
    embedder: Embedder,
    *,
    half: bool = True,
    confidence: float = 0.9,
    head: bool = True,
) -> Calibration:
    """Calibrate ``embedder`` on a pairs file: on its hash-selected half, or all of it."""
    from broker.cache.semantic.decision import SPLIT_SALT

    pairs = read_pairs(path)
    split: dict[str, Any] = {"method": "all pairs"}
    if half:
        pairs = [p for p in pairs if split_part(p[0], p[1]) == 0]
        split = {
            "method": "sha256(salt, sorted pair text) first byte & 1 == part",
            "salt": SPLIT_SALT,
            "part": 0,
        }
    source = {"file": Path(path).name, "sha256": file_sha256(path)}
    va, vb, _ = embed_pairs(pairs, embedder)
    return calibrate(
        pairs,
        embedder,
        source=source,
        split=split,
        confidence=confidence,
        vectors=(va, vb),
        head=head,
    )
