"""Measure the semantic cache's decision rule on labelled pairs, beside fixed cosine thresholds.

    python scripts/eval_semantic_cache.py --pairs FILE [--json] [--target 0.01] [--holdout]
                                          [--calibration PATH]

FILE is JSON lines, gzip or plain, of {"a": ..., "b": ..., "duplicate": true|false}. Every
pair is embedded with the configured embedder (the local all-MiniLM-L6-v2), the shipped
calibration for that embedder decides hit or miss at ``--target`` (the acceptable share of
non-duplicates served), and the same pairs are scored with cosine >= 0.92 and >= 0.95.
``--holdout`` keeps only pairs outside the calibration's hash split (use it on the file the
shipped calibration came from). ``--json`` prints one JSON object instead of a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True, help="labelled pairs (.jsonl or .jsonl.gz)")
    parser.add_argument("--target", type=float, default=0.01, help="acceptable wrong-hit rate")
    parser.add_argument("--holdout", action="store_true", help="only pairs outside the calibration split")
    parser.add_argument("--calibration", help="a calibration JSON instead of the shipped one")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from broker.cache.semantic.decision import Calibration
    from broker.cache.semantic.evaluation import evaluate, holdout, read_pairs
    from broker.embeddings import EmbedderUnavailable
    from broker.embeddings.local import LocalEmbedder

    embedder = LocalEmbedder()
    calibration = (Calibration.load_path(args.calibration) if args.calibration
                   else Calibration.load(embedder.name))
    pairs = read_pairs(args.pairs)
    if args.holdout:
        pairs = holdout(pairs, calibration)
    try:
        result = evaluate(pairs, embedder, calibration, args.target)
    except EmbedderUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["pairs_file"] = os.path.basename(args.pairs)
    result["holdout"] = args.holdout
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return 0

    from rich.console import Console
    from rich.table import Table

    table = Table(title=(f"Semantic cache on {result['pairs_file']}"
                         f"{' (held-out half)' if args.holdout else ''}: "
                         f"{result['n_duplicates']} duplicates, {result['n_non_duplicates']} non-duplicates, "
                         f"embedder {result['embedder']}"))
    for column in ("rule", "paraphrase recall", "wrong-hit rate (non-dup)", "precision of hits", "hits"):
        table.add_column(column, justify="right" if column != "rule" else "left")
    bound = result["estimated_false_hit_rate"]
    table.add_row(f"calibrated {result['rule']}, target {args.target:.2%} (bound {bound:.2%})"
                  if bound is not None
                  else f"calibrated {result['rule']}, target {args.target:.2%} (unreachable)",
                  f"{result['recall']:.1%}", f"{result['false_hit_rate']:.2%}",
                  f"{result['precision']:.1%}", str(result["hits"]))
    for threshold, row in result["baselines"].items():
        table.add_row(f"cosine >= {threshold}", f"{row['recall']:.1%}", f"{row['false_hit_rate']:.2%}",
                      f"{row['precision']:.1%}", str(row["hits"]))
    Console().print(table)
    print(f"guard vetoed {result['vetoed_by_guard']} of {result['n_pairs']} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
