"""Fitting the learned router: candidate models, inner validation, the calibration table.

Why logistic regression: it runs in microseconds on CPU, its parameters are a few hundred
floats that JSON stores exactly (no pickle), and on this data nothing richer validated better
(a cosine kNN on the embeddings did no better out of fold and would have to ship every
training vector). A few honest variants — embedding + lexical at two regularisation strengths,
lexical only — are compared by out-of-fold validation on the training rows alone; the best is
refitted on everything. What is held out in validation is the caller's choice (``hold_out``):

- ``"rows"``: prompts the model did not train on, from the same traffic. Right for a router
  trained on your own traffic, which will see more of the same: the embedding learns which of
  your topics and kinds of task the cheaper tier copes with.
- ``"groups"``: whole groups (an MMLU subject) are never on both sides. Right for a router
  that must serve topics it never saw (the shipped default, trained on public benchmarks):
  what the embedding learns about a topic does not transfer to another, so this choice
  usually falls to the lexical features.

The calibration table maps a strong-call share to a score threshold (quantiles of the final
model's scores on the training traffic) and to the quality reached at that share out of fold:
accuracy as a fraction of strong-only accuracy when the rows say which model was right, else
the fraction of requests answered acceptably.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from schedulers.tiers.curves import routing_curve
from schedulers.tiers.data import TrainingRow
from schedulers.tiers.features import FeatureSpec

__all__ = [
    "CANDIDATES",
    "Candidate",
    "HoldOut",
    "LinearModel",
    "calibration_table",
    "fit_linear",
    "group_splits",
    "holdout_groups",
    "out_of_fold",
    "select",
]

HoldOut = Literal["rows", "groups"]  # what validation holds out (see the module docstring)
SHARE_STEPS = 101  # calibration rows: strong share 0%, 1%, ..., 100%


@dataclass(frozen=True)
class Candidate:
    """A model variant: which features (``"embedding+lexical"`` or ``"lexical"``) and C."""

    name: str
    features: str
    c: float


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("logreg embedding+lexical C=0.01", "embedding+lexical", 0.01),
    Candidate("logreg embedding+lexical C=0.1", "embedding+lexical", 0.1),
    Candidate("logreg lexical C=1", "lexical", 1.0),
)


@dataclass(frozen=True)
class LinearModel:
    """Standardise, then a logistic function: P(cheaper tier acceptable)."""

    spec: FeatureSpec
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    def scores(self, features: np.ndarray) -> np.ndarray:
        z = (np.asarray(features, dtype=np.float64) - self.mean) / self.scale
        return 1.0 / (1.0 + np.exp(-(z @ self.coef + self.intercept)))


def _columns(features: np.ndarray, spec: FeatureSpec, candidate: Candidate) -> tuple:
    """The candidate's columns of a full (embedding + lexical) matrix, and their spec."""
    if candidate.features == "lexical" and spec.embedder is not None:
        return features[:, spec.embedding_dim :], FeatureSpec(lexical=spec.lexical)
    return features, spec


def fit_linear(
    features: np.ndarray, labels: np.ndarray, spec: FeatureSpec, candidate: Candidate
) -> LinearModel:
    """Fit ``candidate`` on a full feature matrix (its spec: ``spec``) and 0/1 labels."""
    # training only: choosing a tier at run time needs no scikit-learn
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, used_spec = _columns(features, spec, candidate)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    y = np.asarray(labels, dtype=int)
    if y.min() == y.max():  # one class only: a constant score, no model to fit
        coef, intercept = np.zeros(x.shape[1]), 8.0 if y[0] else -8.0
    else:
        model = LogisticRegression(C=candidate.c, max_iter=2000)
        model.fit((x - scaler.mean_) / scale, y)
        coef, intercept = model.coef_[0].astype(np.float64), float(model.intercept_[0])
    return LinearModel(used_spec, scaler.mean_.astype(np.float64), scale, coef, intercept)


def group_splits(n: int, groups: Sequence[str] | None, folds: int, seed: int) -> list:
    from sklearn.model_selection import GroupKFold  # training only

    keys = np.asarray(groups if groups is not None else np.arange(n).astype(str))
    unique = np.unique(keys)
    # Shuffle group identities so that folds do not follow file order.
    rename = dict(zip(unique, np.random.default_rng(seed).permutation(unique.size), strict=True))
    ids = np.array([rename[key] for key in keys])
    k = min(folds, unique.size)
    if k < 2:
        raise ValueError("validation needs at least two groups of rows")
    return list(GroupKFold(n_splits=k).split(np.zeros(n), groups=ids))


def out_of_fold(
    features: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    candidate: Candidate,
    groups: Sequence[str] | None = None,
    folds: int = 3,
    seed: int = 0,
) -> np.ndarray:
    """Scores each row got from a model fitted without its group (without itself when
    ``groups`` is None)."""
    out = np.zeros(len(labels))
    for train_idx, test_idx in group_splits(len(labels), groups, folds, seed):
        model = fit_linear(features[train_idx], labels[train_idx], spec, candidate)
        x, _ = _columns(features[test_idx], spec, candidate)
        out[test_idx] = model.scores(x)
    return out


def _has_correctness(rows: Sequence[TrainingRow]) -> bool:
    return all(r.weak_correct is not None and r.strong_correct is not None for r in rows)


def validation_metric(scores: np.ndarray, rows: Sequence[TrainingRow]) -> tuple[str, float]:
    """AIQ of the routing curve when rows carry correctness, else ROC AUC of ``acceptable``."""
    from sklearn.metrics import roc_auc_score  # training only

    if _has_correctness(rows):
        weak = [bool(r.weak_correct) for r in rows]
        strong = [bool(r.strong_correct) for r in rows]
        return "aiq", routing_curve(scores, weak, strong).aiq()
    labels = np.array([r.acceptable for r in rows], dtype=int)
    if labels.min() == labels.max():
        return "roc_auc", 0.5
    return "roc_auc", float(roc_auc_score(labels, scores))


def holdout_groups(rows: Sequence[TrainingRow], hold_out: HoldOut) -> list[str] | None:
    """The groups validation holds out together: the rows' own groups for ``"groups"``, None
    (each row alone) for ``"rows"``."""
    if hold_out == "rows":
        return None
    if hold_out != "groups":
        raise ValueError(f"hold_out must be 'rows' or 'groups', not {hold_out!r}")
    missing = sum(r.group is None for r in rows)
    if missing:
        raise ValueError(
            f"holding out groups needs a group on every row; {missing} of {len(rows)} have "
            'none (give each JSON line a "group", or hold out rows)'
        )
    return [str(r.group) for r in rows]


def select(
    features: np.ndarray,
    rows: Sequence[TrainingRow],
    spec: FeatureSpec,
    candidates: Sequence[Candidate] = CANDIDATES,
    folds: int = 3,
    seed: int = 0,
    hold_out: HoldOut = "rows",
) -> tuple[Candidate, np.ndarray, dict[str, float], str]:
    """The best candidate by out-of-fold validation (holding out ``hold_out``: see the module
    docstring), its out-of-fold scores, every candidate's metric, and the metric's name.
    Candidates needing an embedding are skipped when ``spec`` has none."""
    labels = np.array([r.acceptable for r in rows], dtype=int)
    groups = holdout_groups(rows, hold_out)
    usable = [c for c in candidates if c.features == "lexical" or spec.embedder is not None]
    results: dict[str, float] = {}
    best: tuple[float, Candidate, np.ndarray] | None = None
    metric = "roc_auc"
    for candidate in usable:
        oof = out_of_fold(features, labels, spec, candidate, groups, folds, seed)
        metric, value = validation_metric(oof, rows)
        results[candidate.name] = value
        if best is None or value > best[0]:
            best = (value, candidate, oof)
    if best is None:
        raise ValueError("no candidate model fits these features")
    return best[1], best[2], results, metric


def calibration_table(
    training_scores: np.ndarray, oof_scores: np.ndarray, rows: Sequence[TrainingRow]
) -> tuple[str, list[dict[str, float]]]:
    """Rows ``{strong_share, threshold, oof_quality}`` at shares 0, 1%, ..., 100%.

    ``threshold``: send a prompt to the strong tier when its score is below it; chosen so that
    that share of the training traffic's scores (final model) fall below. ``oof_quality``: the
    quality reached at that share with out-of-fold scores (see the module docstring).
    """
    if _has_correctness(rows):
        measure = "fraction of strong-only accuracy"
        weak = np.array([bool(r.weak_correct) for r in rows])
        strong = np.array([bool(r.strong_correct) for r in rows])
    else:
        measure = "fraction of requests answered acceptably"
        weak = np.array([r.acceptable for r in rows])
        strong = np.ones(len(rows), dtype=bool)
    curve = routing_curve(oof_scores, weak, strong)
    ordered = np.sort(np.asarray(training_scores, dtype=np.float64))
    n = ordered.size
    table = []
    for share in np.linspace(0.0, 1.0, SHARE_STEPS):
        k = round(float(share) * n)
        if k == 0:
            threshold = 0.0
        elif k == n:
            threshold = 1.0
        else:
            threshold = float((ordered[k - 1] + ordered[k]) / 2)
        quality = curve.accuracy_at(share) / max(curve.strong_accuracy, 1e-12)
        table.append(
            {
                "strong_share": round(float(share), 4),
                "threshold": threshold,
                "oof_quality": round(quality, 6),
            }
        )
    return measure, table
