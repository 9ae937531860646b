"""The learned layer of tier choice: P(the cheaper tier's answer is acceptable) from a prompt.

:func:`train` fits it on labelled rows (see :mod:`schedulers.tiers.data` for the label and the
file formats; model choice in :mod:`schedulers.tiers.fitting`). :class:`LearnedRouter` scores
prompts and decides: below the threshold goes to the strong tier. The operator calibrates by
what they ask for — :meth:`LearnedRouter.threshold_for_strong_share` (a share of flagship
calls, from the score distribution on the training traffic) or
:meth:`LearnedRouter.threshold_for_quality` (a quality target, from out-of-fold predictions) —
and :meth:`LearnedRouter.with_threshold` returns the router using it.

Stored as JSON, never pickle: a version that is the hash of the content, the creation date,
the training data (files, sha256, rows), the feature spec, scaler statistics, coefficients and
intercept, how the model was chosen, and the calibration table. Loading a model whose features
need the embedder fails clearly when the embedder extra is missing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from broker.embeddings import Embedder
from schedulers.tiers.data import TrainingRow, TrainingSet, as_rows
from schedulers.tiers.features import FeatureExtractor, FeatureSpec
from schedulers.tiers.fitting import (
    CANDIDATES,
    Candidate,
    HoldOut,
    LinearModel,
    calibration_table,
    fit_linear,
    select,
)

__all__ = ["DEFAULT_QUALITY", "FORMAT", "LearnedRouter", "fit_from_features", "train"]

FORMAT = "inference-broker/learned-router@1"
LABEL = "acceptable = the weak model was right, or both models were wrong"
#: The threshold a freshly trained router uses: 95% of strong-only quality, out of fold.
DEFAULT_QUALITY = 0.95


@dataclass(frozen=True)
class LearnedRouter:
    """A fitted, calibrated router. Immutable: recalibrating returns a new one."""

    model: LinearModel
    calibration: list[dict[str, float]]
    quality_measure: str
    threshold: float
    info: dict[str, Any]  # training data, selection, created: written as they are
    extractor: FeatureExtractor | None = None

    # -- scoring -----------------------------------------------------------------------------
    def _extractor(self) -> FeatureExtractor:
        if self.extractor is None:
            object.__setattr__(self, "extractor", FeatureExtractor.for_spec(self.model.spec))
        assert self.extractor is not None
        return self.extractor

    def scores(self, prompts: Sequence[str]) -> np.ndarray:
        """P(cheaper tier acceptable) for each prompt."""
        return self.model.scores(self._extractor().transform(list(prompts)))

    def decide(self, prompt: str, threshold: float | None = None) -> tuple[float, bool]:
        """``(score, choose_strong)``: strong when the score is below the threshold."""
        score = float(self.scores([prompt])[0])
        return score, score < (self.threshold if threshold is None else threshold)

    # -- calibration -------------------------------------------------------------------------
    def threshold_for_strong_share(self, share: float) -> float:
        """Threshold sending about ``share`` of the training traffic to the strong tier."""
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be within [0, 1], got {share}")
        shares = [row["strong_share"] for row in self.calibration]
        thresholds = [row["threshold"] for row in self.calibration]
        return float(np.interp(share, shares, thresholds))

    def strong_share_for_quality(self, target: float) -> float:
        """Least strong share whose out-of-fold quality reaches ``target`` (1.0 if none)."""
        for row in self.calibration:
            if row["oof_quality"] >= target:
                return float(row["strong_share"])
        return 1.0

    def threshold_for_quality(self, target: float) -> float:
        """Threshold reaching ``target`` quality (see ``quality_measure``) out of fold."""
        return self.threshold_for_strong_share(self.strong_share_for_quality(target))

    def with_threshold(self, threshold: float) -> LearnedRouter:
        return replace(self, threshold=float(threshold))

    # -- storage -----------------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "label": LABEL,
            "training_data": self.info.get("training_data", {}),
            "selection": self.info.get("selection", {}),
            "features": self.model.spec.to_dict(),
            "model": {
                "kind": "logistic_regression",
                "scaler_mean": self.model.mean.tolist(),
                "scaler_scale": self.model.scale.tolist(),
                "coef": self.model.coef.tolist(),
                "intercept": self.model.intercept,
            },
            "calibration": {"quality_measure": self.quality_measure, "table": self.calibration},
            "threshold": self.threshold,
        }

    @property
    def version(self) -> str:
        """``sha256:<first 16 hex>`` of the canonical JSON body (everything but the date)."""
        canonical = json.dumps(self._body(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        created = self.info.get("created") or datetime.now(UTC).isoformat(timespec="seconds")
        return {"version": self.version, "created": created, **self._body()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n", encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any], embedder: Embedder | None = None) -> LearnedRouter:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a learned router ({FORMAT}): format={data.get('format')!r}")
        spec = FeatureSpec.from_dict(data["features"])
        params = data["model"]
        model = LinearModel(
            spec,
            np.asarray(params["scaler_mean"], dtype=np.float64),
            np.asarray(params["scaler_scale"], dtype=np.float64),
            np.asarray(params["coef"], dtype=np.float64),
            float(params["intercept"]),
        )
        if not model.mean.size == model.scale.size == model.coef.size == spec.width:
            raise ValueError(f"model has {model.coef.size} weights for {spec.width} features")
        info = {key: data.get(key) for key in ("training_data", "selection", "created")}
        router = cls(
            model=model,
            calibration=list(data["calibration"]["table"]),
            quality_measure=data["calibration"]["quality_measure"],
            threshold=float(data["threshold"]),
            info=info,
            extractor=FeatureExtractor.for_spec(spec, embedder) if embedder else None,
        )
        if data.get("version") and data["version"] != router.version:
            raise ValueError(f"version {data['version']} does not match content {router.version}")
        return router

    @classmethod
    def load(cls, path: str | Path, embedder: Embedder | None = None) -> LearnedRouter:
        """Read a saved router; the embedder loads on first use (or pass one)."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")), embedder)


def fit_from_features(
    features: np.ndarray,
    rows: Sequence[TrainingRow],
    spec: FeatureSpec,
    *,
    candidates: Sequence[Candidate] = CANDIDATES,
    folds: int = 3,
    seed: int = 0,
    training_data: dict[str, Any] | None = None,
    extractor: FeatureExtractor | None = None,
    hold_out: HoldOut = "rows",
) -> LearnedRouter:
    """Choose a candidate by out-of-fold validation holding out ``hold_out`` (rows, or whole
    groups: :mod:`.fitting`), refit it on all rows, calibrate.

    ``features`` is the full matrix of ``spec`` for ``rows`` (so callers can embed once).
    """
    rows = as_rows(rows)
    if len(rows) < 4:
        raise ValueError(f"need at least 4 training rows, got {len(rows)}")
    chosen, oof, results, metric = select(
        features, rows, spec, candidates, folds, seed, hold_out=hold_out
    )
    labels = np.array([r.acceptable for r in rows], dtype=int)
    model = fit_linear(features, labels, spec, chosen)
    used = features[:, spec.embedding_dim :] if model.spec.embedder != spec.embedder else features
    measure, table = calibration_table(model.scores(used), oof, rows)
    description = dict(training_data or {"rows": len(rows)})
    description["acceptable_rate"] = round(float(labels.mean()), 6)
    selection = {
        "chosen": chosen.name,
        "C": chosen.c,
        "metric": f"out-of-fold {metric}",
        "folds": folds,
        "grouped": hold_out == "groups",  # select() refused groups asked for and missing
        "candidates": {name: round(value, 6) for name, value in results.items()},
    }
    router = LearnedRouter(
        model=model,
        calibration=table,
        quality_measure=measure,
        threshold=0.5,
        info={
            "training_data": description,
            "selection": selection,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        extractor=extractor if extractor and extractor.spec == model.spec else None,
    )
    return router.with_threshold(router.threshold_for_quality(DEFAULT_QUALITY))


def train(
    rows: TrainingSet | Iterable[TrainingRow | tuple],
    *,
    embedder: Embedder | None = None,
    use_embeddings: bool = True,
    candidates: Sequence[Candidate] = CANDIDATES,
    folds: int = 3,
    seed: int = 0,
    hold_out: HoldOut = "rows",
) -> LearnedRouter:
    """Train a router on ``(prompt, acceptable[, weak_correct, strong_correct, group])`` rows,
    validating on held-out rows or, with ``hold_out="groups"``, held-out groups.

    Uses the embedding when ``embedder`` is given or the local one loads, else lexical features
    only (flagged in the saved model). A :class:`TrainingSet` also records its source files.
    """
    description = rows.describe() if isinstance(rows, TrainingSet) else None
    items = as_rows(rows.rows if isinstance(rows, TrainingSet) else rows)
    extractor = FeatureExtractor.best_available(embedder, use_embeddings=use_embeddings)
    features = extractor.transform([row.prompt for row in items])
    return fit_from_features(
        features,
        items,
        extractor.spec,
        candidates=candidates,
        folds=folds,
        seed=seed,
        training_data=description or {"rows": len(items)},
        extractor=extractor,
        hold_out=hold_out,
    )
