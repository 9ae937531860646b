"""Evaluate the learned tier router on questions it was not trained on: the cost–quality curve.

    python scripts/eval_routing.py --data DIR [--json] [--folds 5] [--cache DIR]

DIR is in the layout of ``../shared/data/routing`` (``mmlu/mmlu_<subject>.csv``,
``gsm8k_responses.csv``: each question with whether the weak and the strong model answered it
correctly). Every question is scored by a router that never saw it (cross-fitting, 5 folds),
in two ways:

- **held-out questions** (the headline figures): k-fold by question; the router trains on the
  other folds, as a router trained on your own traffic (``inference-broker router train``)
  serves more of the same traffic. The model variant is chosen inside each fold by
  out-of-fold validation on that fold's training rows, held out by row;
- **held-out groups**, where a dataset has groups of several questions (MMLU: its subjects):
  group k-fold, the router predicting a subject trained on the other subjects only, and its
  variant chosen holding out whole subjects too. This says what the router knows of topics
  nobody trained it on (what the shipped router faces on a company's traffic).

Each fold's router also trains on all of the *other* datasets (not the one being scored).

For each dataset it prints our router, random routing and the oracle: RouterBench's AIQ, the
share of strong calls needed to reach 95% of strong-only accuracy, and accuracy at strong
shares 0%, 10%, ..., 100%. ``--json`` prints one object instead (the held-out-groups figures
under ``unseen_groups``). ``--cache DIR`` keeps the embeddings (keyed by a hash of the
prompts) so a second run skips the slow part.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from schedulers.tiers.curves import Curve, oracle_curve, random_curve, routing_curve
from schedulers.tiers.data import LabelledQuestion, load_routing_dir
from schedulers.tiers.features import FeatureExtractor
from schedulers.tiers.fitting import HoldOut, group_splits, holdout_groups
from schedulers.tiers.learned import fit_from_features

GRID = [i / 10 for i in range(11)]
SPLIT_TEXT = {
    "rows": "{k}-fold by question (trained on the other folds + all other datasets)",
    "groups": "group {k}-fold: {groups} groups (trained on the other groups + all other datasets)",
}


def features_for(
    extractor: FeatureExtractor, questions: list[LabelledQuestion], cache: Path | None
) -> np.ndarray:
    prompts = [q.prompt for q in questions]
    key = hashlib.sha256(json.dumps([extractor.spec.to_dict(), prompts]).encode()).hexdigest()[:24]
    path = cache / f"features-{key}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path)
    matrix = extractor.transform(prompts)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, matrix)
    return matrix


def cross_fit(
    name: str,
    datasets: dict[str, list[LabelledQuestion]],
    matrices: dict[str, np.ndarray],
    extractor: FeatureExtractor,
    folds: int,
    hold_out: HoldOut,
) -> tuple[np.ndarray, list[str]]:
    """Held-out scores for every question of ``name`` (folds of questions, or of whole groups)
    and the variant chosen in each fold."""
    questions = datasets[name]
    others = [o for o in datasets if o != name]
    other_rows = [q.row() for o in others for q in datasets[o]]
    other_x = [matrices[o] for o in others]
    scores = np.zeros(len(questions))
    chosen = []
    groups = holdout_groups([q.row() for q in questions], hold_out)
    for train_idx, test_idx in group_splits(len(questions), groups, folds, 0):
        rows = [questions[i].row() for i in train_idx] + other_rows
        x = np.vstack([matrices[name][train_idx], *other_x])
        router = fit_from_features(x, rows, extractor.spec, hold_out=hold_out)
        test = matrices[name][test_idx]
        if router.model.spec.embedder != extractor.spec.embedder:
            test = test[:, extractor.spec.embedding_dim :]
        scores[test_idx] = router.model.scores(test)
        chosen.append(router.info["selection"]["chosen"])
    return scores, chosen


def summarise(curve: Curve) -> dict[str, object]:
    return {
        "strong_share_at_95": round(curve.strong_share_at(0.95), 4),
        "aiq": round(curve.aiq(), 4),
        "accuracy_at_share": {f"{s:.1f}": round(curve.accuracy_at(s), 4) for s in GRID},
    }


def evaluate(name: str, questions: list[LabelledQuestion], scores: np.ndarray) -> dict:
    weak = np.array([q.weak_correct for q in questions])
    strong = np.array([q.strong_correct for q in questions])
    ours = summarise(routing_curve(scores, weak, strong))
    rand = summarise(random_curve(weak, strong))
    oracle = summarise(oracle_curve(weak, strong))
    return {
        "strong_share_at_95": ours["strong_share_at_95"],
        "aiq": ours["aiq"],
        "random_aiq": rand["aiq"],
        "oracle_aiq": oracle["aiq"],
        "random_strong_share_at_95": rand["strong_share_at_95"],
        "oracle_strong_share_at_95": oracle["strong_share_at_95"],
        "questions": len(questions),
        "groups": len({q.group for q in questions}),
        "weak_accuracy": round(float(weak.mean()), 4),
        "strong_accuracy": round(float(strong.mean()), 4),
        "curves": {
            "router": ours["accuracy_at_share"],
            "random": rand["accuracy_at_share"],
            "oracle": oracle["accuracy_at_share"],
        },
    }


def print_tables(console: Console, results: dict[str, dict], header: str) -> None:
    console.print(header)
    for name, r in results.items():
        table = Table(
            title=f"{name}: {r['questions']} questions, {r['groups']} groups; "
            f"weak {r['weak_accuracy']:.1%}, strong {r['strong_accuracy']:.1%}"
        )
        table.add_column("router")
        table.add_column("AIQ", justify="right")
        table.add_column("strong share @95%", justify="right")
        for s in GRID:
            table.add_column(f"{s:.0%}", justify="right")
        rows = [("learned, held-out questions", r["curves"]["router"], r)]
        unseen = r.get("unseen_groups")
        if unseen:
            rows.append(("learned, held-out groups", unseen["curve"], unseen))
        rows += [
            ("random", r["curves"]["random"], _prefixed(r, "random_")),
            ("oracle", r["curves"]["oracle"], _prefixed(r, "oracle_")),
        ]
        for label, curve, figures in rows:
            table.add_row(
                label,
                f"{figures['aiq']:.4f}",
                f"{figures['strong_share_at_95']:.1%}",
                *(f"{curve[f'{s:.1f}']:.3f}" for s in GRID),
            )
        console.print(table)
        console.print(f"  held-out questions: {r['split']}")
        console.print(f"    variants chosen per fold: {', '.join(r['chosen_per_fold'])}")
        if unseen:
            console.print(f"  held-out groups: {unseen['split']}")
            console.print(f"    variants chosen per fold: {', '.join(unseen['chosen_per_fold'])}")
        console.print()


def _prefixed(result: dict, prefix: str) -> dict:
    return {key: result[prefix + key] for key in ("aiq", "strong_share_at_95")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, type=Path, help="routing data directory")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--folds", type=int, default=5, help="outer folds (default 5)")
    parser.add_argument("--cache", type=Path, default=None, help="keep embeddings here")
    args = parser.parse_args(argv)
    started = time.monotonic()
    datasets, _ = load_routing_dir(args.data)
    extractor = FeatureExtractor.best_available()
    matrices = {name: features_for(extractor, qs, args.cache) for name, qs in datasets.items()}
    results: dict[str, dict] = {}
    for name, questions in datasets.items():
        scores, chosen = cross_fit(name, datasets, matrices, extractor, args.folds, "rows")
        results[name] = evaluate(name, questions, scores) | {
            "split": SPLIT_TEXT["rows"].format(k=min(args.folds, len(questions))),
            "chosen_per_fold": chosen,
        }
        groups = len({q.group for q in questions})
        if 1 < groups < len(questions):  # groups of several questions: a harder second split
            scores, chosen = cross_fit(name, datasets, matrices, extractor, args.folds, "groups")
            unseen = evaluate(name, questions, scores)
            results[name]["unseen_groups"] = {
                "strong_share_at_95": unseen["strong_share_at_95"],
                "aiq": unseen["aiq"],
                "curve": unseen["curves"]["router"],
                "split": SPLIT_TEXT["groups"].format(k=min(args.folds, groups), groups=groups),
                "chosen_per_fold": chosen,
            }
    features = extractor.spec.embedder or f"lexical only ({extractor.spec.degraded_reason})"
    for result in results.values():
        result["features"] = features
    if args.json:
        print(json.dumps(results))
        print(f"{time.monotonic() - started:.0f}s", file=sys.stderr)
    else:
        console = Console()
        console.width = max(console.width, 150)  # the curve needs the room, even in a pipe
        print_tables(console, results, f"features: {features} + lexical")
        print(f"{time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
