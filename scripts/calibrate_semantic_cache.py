"""Fit the semantic cache's decision rule for an embedder from labelled pairs.

    python scripts/calibrate_semantic_cache.py --pairs FILE [--all] [--confidence 0.9] [--out PATH]
                                               [--no-head]

By default it uses the hash-selected half of FILE (so the other half stays for honest
figures with ``eval_semantic_cache.py --holdout``) and writes
``broker/cache/semantic/calibration/<embedder>.json``. ``--all`` uses every pair.
Besides the cosine + lexical model it fits the pair head over the two embedding vectors
(nested cross-validation; a few minutes on CPU); ``--no-head`` skips it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--all", action="store_true", help="use every pair, not the hash half")
    parser.add_argument("--confidence", type=float, default=0.9,
                        help="one-sided confidence of the wrong-hit upper bound")
    parser.add_argument("--out", help="where to write the calibration JSON")
    parser.add_argument("--no-head", action="store_true",
                        help="only the cosine + lexical model, no pair head over the vectors")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from broker.cache.semantic.decision import CALIBRATION_DIR
    from broker.cache.semantic.evaluation import calibrate_file
    from broker.embeddings.local import LocalEmbedder

    embedder = LocalEmbedder()
    calibration = calibrate_file(args.pairs, embedder, half=not args.all, confidence=args.confidence,
                                 head=not args.no_head)
    out = Path(args.out) if args.out else CALIBRATION_DIR / f"{embedder.name}.json"
    calibration.save(out)
    print(f"wrote {out}: {calibration.counts}")
    rules = [("cosine + lexical (no vectors)", False)]
    if calibration.has_head:
        head = calibration.head or {}
        rules.append((f"pair head (rank {head.get('rank')}, C {head.get('C')}; with vectors)", True))
    for label, use_head in rules:
        print(f" {label}:")
        for target in (0.005, 0.01, 0.02, 0.05):
            point = calibration.operating_point(target, head=use_head)
            if point is None:
                print(f"  target {target:.1%}: unreachable with {calibration.counts['non_duplicates']} non-duplicates")
            else:
                print(f"  target {target:.1%}: threshold {point.threshold:.4f}, bound {point.upper_false_hit_rate:.2%}, "
                      f"out-of-fold wrong hits {point.false_hits}, "
                      f"out-of-fold recall {point.true_hits / calibration.counts['duplicates']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
