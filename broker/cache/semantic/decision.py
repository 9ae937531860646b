"""Turn an operator's acceptable wrong-hit rate into hit/miss decisions, per embedder.

A cosine threshold means nothing across embedders, and even for one embedder a fixed
threshold that keeps wrong hits under 1% on near-miss pairs keeps very few paraphrases.
Inspired by vCache (arXiv 2502.03771), which learns P(correct | similarity) and only serves
when a confidence bound on the error fits the user's bound, this module (our own, offline,
global variant) does:

1. **Score**: a logistic model over :mod:`.features` (cosine plus cheap lexical signals)
   estimates P(same meaning) for a candidate pair.
2. **Calibrate**: on labelled pairs, out-of-fold scores of the non-duplicates give, for every
   candidate score threshold, the number of wrong hits; a one-sided Clopper–Pearson upper
   bound (default 90%, one-sided) on the wrong-hit rate is stored with each threshold. For a target
   rate the rule uses the lowest threshold whose *upper bound* fits the target.
3. **Veto**: :func:`.guard.guard_reason` always wins (negations, antonyms, numbers, ...).

When the caller passes the two embedding vectors (``decide(..., vectors=(u, v))``) and the
calibration has one, a **pair head** scores instead: a logistic regression over the same
lexical features plus ``|u - v|`` and ``u * v`` (:func:`.features.vector_features`). It is
fitted as a reduced-rank model (PCA of the vector features, rank and L2 strength chosen by
inner cross-validation on the training rows only, on partial AUC at wrong-hit rate <= 5%),
then folded into one weight per vector feature, so request time is a dot product in numpy.
It has its own out-of-fold threshold curve, built the same way (nested: the inner choice is
redone inside every outer fold). Without vectors the cosine + lexical model above decides,
with its own curve: both paths are calibrated.

The calibration is a small JSON file (no pickle): embedder name, source file and sha256,
pair counts, the split, the model's weights and the threshold curve. The shipped default is
fitted on the hash-selected half of the QQP dev pairs (:func:`split_part` == 0); figures are
reported on the other half.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from broker.cache.semantic import CalibrationError
from broker.cache.semantic.features import FEATURE_NAMES, pair_features, vector_features
from broker.cache.semantic.guard import guard_reason
from broker.embeddings import Embedder

__all__ = ["Calibration", "Decision", "LabelledPair", "calibrate", "split_part"]

CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"
FORMAT_VERSION = 1
SPLIT_SALT = "ib-semantic-calibration-v1"

LabelledPair = tuple[str, str, bool]
Vectors = tuple[np.ndarray, np.ndarray]

# Pair head: reduced rank of the vector features and L2 strength, chosen by inner CV.
HEAD_RANKS = (8, 16, 32)
HEAD_CS = (0.03, 0.1, 0.3)
HEAD_SELECTION_MAX_FPR = 0.05


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether to serve the cached answer, and why.

    ``score`` is the model's P(same meaning) (0 when vetoed); ``estimated_false_hit_rate``
    is the calibrated upper bound on wrong hits among non-duplicates at the threshold used.
    """

    hit: bool
    score: float
    estimated_false_hit_rate: float
    reason: str


def split_part(a: str, b: str, salt: str = SPLIT_SALT) -> int:
    """0 (calibration) or 1 (held out), from a hash of the pair's text (order-independent)."""
    first, second = sorted((a.strip(), b.strip()))
    digest = hashlib.sha256(f"{salt}\x00{first}\x00{second}".encode()).digest()
    return digest[0] & 1


def clopper_pearson_upper(k: int, n: int, confidence: float) -> float:
    """One-sided upper confidence bound on a binomial rate with ``k`` successes in ``n``."""
    from scipy.stats import beta  # calibration time only

    if n <= 0:
        return 1.0
    if k >= n:
        return 1.0
    return float(beta.ppf(confidence, k + 1, n - k))


@dataclass(frozen=True, slots=True)
class OperatingPoint:
    """One row of the threshold curve: serve when score >= threshold."""

    threshold: float
    false_hits: int
    true_hits: int
    upper_false_hit_rate: float


@dataclass(frozen=True)
class Calibration:
    """A fitted decision rule for one embedder; see the module docstring."""

    embedder: str
    source: dict[str, Any]
    split: dict[str, Any]
    model: dict[str, Any]
    confidence: float
    curve: tuple[OperatingPoint, ...]
    counts: dict[str, int] = field(default_factory=dict)
    head: dict[str, Any] | None = None
    head_curve: tuple[OperatingPoint, ...] = ()

    @cached_property
    def _arrays(self) -> dict[str, dict[str, Any]]:
        """The models' weights as numpy arrays, converted once (request time is hot)."""
        out = {"model": _as_arrays(self.model)}
        if self.head is not None:
            out["head"] = _as_arrays(self.head)
        return out

    @property
    def has_head(self) -> bool:
        """Whether a pair head (needs the two embedding vectors) was calibrated."""
        return self.head is not None and bool(self.head_curve)

    # ---- scoring ---------------------------------------------------------------------------
    def score(self, a: str, b: str, cosine: float, *, vectors: Vectors | None = None) -> float:
        """P(same meaning) for the pair: the pair head when ``vectors`` are given and a head
        is calibrated, else the cosine + lexical logistic model."""
        x = pair_features(a, b, cosine)
        if vectors is not None and self.has_head:
            assert self.head is not None
            u, v = (np.asarray(t) for t in vectors)
            dim = int(self.head["dim"])
            if u.shape != (dim,) or v.shape != (dim,):
                raise ValueError(
                    f"vectors must both have shape ({dim},) for {self.embedder}, "
                    f"got {u.shape} and {v.shape}"
                )
            head = self._arrays["head"]
            return float(_predict_head(head, x[None, :], vector_features(u, v)[None, :])[0])
        return float(_predict(self._arrays["model"], x[None, :])[0])

    def operating_point(self, target: float, *, head: bool | None = None) -> OperatingPoint | None:
        """The most permissive point whose upper-bound wrong-hit rate is <= ``target``.

        ``head`` picks the pair head's curve (default: when one is calibrated) or the cosine
        + lexical model's (``False``).
        """
        use_head = self.has_head if head is None else (head and self.has_head)
        best = None
        for point in self.head_curve if use_head else self.curve:  # strict to permissive
            if point.upper_false_hit_rate <= target:
                best = point
        return best

    def decide(
        self,
        a: str,
        b: str,
        cosine: float,
        target: float,
        *,
        vectors: Vectors | None = None,
    ) -> Decision:
        """Hit or miss for the query ``a`` against the cached ``b`` at wrong-hit ``target``.

        ``vectors=(u, v)``, the embeddings of ``a`` and ``b`` under this calibration's
        embedder, lets the pair head decide (higher recall at the same bound); without them
        the cosine + lexical model decides against its own calibrated curve.
        """
        reason = guard_reason(a, b)
        use_head = vectors is not None and self.has_head
        point = self.operating_point(target, head=use_head)
        if reason is not None:
            return Decision(False, 0.0, 0.0, reason)
        if point is None:
            return Decision(False, 0.0, 0.0, f"no calibrated threshold reaches {target:g}")
        score = self.score(a, b, cosine, vectors=vectors if use_head else None)
        if score >= point.threshold:
            return Decision(
                True, score, point.upper_false_hit_rate, "calibrated score above threshold"
            )
        return Decision(
            False, score, point.upper_false_hit_rate, "calibrated score below threshold"
        )

    # ---- persistence -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        head = (
            {"model": self.head, "curve": [asdict(p) for p in self.head_curve]}
            if self.has_head
            else None
        )
        return {
            "format": FORMAT_VERSION,
            "embedder": self.embedder,
            "source": self.source,
            "split": self.split,
            "counts": self.counts,
            "confidence": self.confidence,
            "model": self.model,
            "curve": [asdict(p) for p in self.curve],
            # Optional (absent in older files; older readers ignore it).
            **({"pair_head": head} if head else {}),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        try:
            if data["format"] != FORMAT_VERSION:
                raise CalibrationError(f"calibration format {data['format']} is not supported")
            if tuple(data["model"]["features"]) != FEATURE_NAMES:
                raise CalibrationError("calibration was fitted on other features; re-calibrate")
            curve = tuple(OperatingPoint(**p) for p in data["curve"])
            head, head_curve = None, ()
            if data.get("pair_head"):
                head = data["pair_head"]["model"]
                if head.get("kind") != "pair_logistic" or tuple(head["features"]) != FEATURE_NAMES:
                    raise CalibrationError("pair head was fitted on other features; re-calibrate")
                if len(head["vector_coef"]) != 2 * int(head["dim"]):
                    raise CalibrationError("pair head weights do not match its dimension")
                head_curve = tuple(OperatingPoint(**p) for p in data["pair_head"]["curve"])
            return cls(
                embedder=data["embedder"],
                source=data["source"],
                split=data["split"],
                model=data["model"],
                confidence=float(data["confidence"]),
                curve=curve,
                counts=dict(data.get("counts", {})),
                head=head,
                head_curve=head_curve,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"unreadable calibration: {exc}") from exc

    @classmethod
    def load_path(cls, path: str | Path) -> Calibration:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CalibrationError(f"cannot read calibration {path}: {exc}") from exc
        return cls.from_json(data)

    @classmethod
    def load(cls, name: str) -> Calibration:
        """The shipped calibration for embedder ``name`` (``calibration/<name>.json``)."""
        path = CALIBRATION_DIR / f"{name}.json"
        if not path.exists():
            raise CalibrationError(
                f"no shipped calibration for embedder {name!r}; run the calibrate command"
            )
        calibration = cls.load_path(path)
        if calibration.embedder != name:
            raise CalibrationError(f"{path} is for embedder {calibration.embedder!r}, not {name!r}")
        return calibration


def _fit_logistic(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression  # calibration time only

    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    model = LogisticRegression(C=1.0, max_iter=2000).fit((x - mean) / scale, y)
    return {
        "kind": "logistic",
        "features": list(FEATURE_NAMES),
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef": model.coef_[0].tolist(),
        "intercept": float(model.intercept_[0]),
    }


def _as_arrays(model: dict[str, Any]) -> dict[str, Any]:
    keys = ("mean", "scale", "coef", "vector_coef")
    return {k: (np.asarray(v, dtype=np.float64) if k in keys else v) for k, v in model.items()}


def _predict(model: dict[str, Any], x: np.ndarray) -> np.ndarray:
    z = ((x - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(model["coef"])
    return 1.0 / (1.0 + np.exp(-(z + model["intercept"])))


def _predict_head(model: dict[str, Any], x: np.ndarray, e: np.ndarray) -> np.ndarray:
    """P(same meaning) from the pair head: lexical rows ``x`` and vector-feature rows ``e``."""
    z = ((x - np.asarray(model["mean"])) / np.asarray(model["scale"])) @ np.asarray(model["coef"])
    z = z + e @ np.asarray(model["vector_coef"]) + model["intercept"]
    return 1.0 / (1.0 + np.exp(-z))


def _basis(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and principal axes (rows, by decreasing variance) of the vector features."""
    mu = e.mean(axis=0)
    _, _, vt = np.linalg.svd(e - mu, full_matrices=False)
    return mu, vt


def _fit_head_fixed(
    x: np.ndarray,
    e: np.ndarray,
    y: np.ndarray,
    rank: int,
    c: float,
    basis: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The vector features projected on their first ``rank`` principal axes, plus the lexical
    features, standardised, into an L2 logistic regression; then folded back into one linear
    model on (lexical features, vector features) for request time."""
    from sklearn.linear_model import LogisticRegression  # calibration time only

    mu, vt = basis if basis is not None else _basis(e)
    axes = vt[: max(1, min(rank, vt.shape[0]))]
    rank = axes.shape[0]
    xs = np.hstack([(e - mu) @ axes.T, x])
    mean = xs.mean(axis=0)
    scale = xs.std(axis=0)
    scale[scale == 0] = 1.0
    fit = LogisticRegression(C=c, max_iter=5000).fit((xs - mean) / scale, y)
    w = fit.coef_[0] / scale
    w_p, w_x = w[:rank], w[rank:]
    # z = ((e - mu) A^T - mean_p) . w_p + (x - mean_x) . w_x + b
    vector_coef = axes.T @ w_p
    intercept = float(fit.intercept_[0] - mu @ vector_coef - mean[:rank] @ w_p)
    return {
        "kind": "pair_logistic",
        "features": list(FEATURE_NAMES),
        "vector_features": ["abs_diff", "product"],
        "dim": e.shape[1] // 2,
        "rank": rank,
        "C": c,
        "mean": mean[rank:].tolist(),
        "scale": [1.0] * x.shape[1],
        "coef": w_x.tolist(),
        "vector_coef": vector_coef.tolist(),
        "intercept": intercept,
    }


def _fit_head(
    x: np.ndarray,
    e: np.ndarray,
    y: np.ndarray,
    inner: int = 4,
    ranks: Sequence[int] = HEAD_RANKS,
    cs: Sequence[float] = HEAD_CS,
) -> dict[str, Any]:
    """The pair head with rank and C chosen by ``inner``-fold CV on these rows only
    (criterion: partial ROC AUC up to a wrong-hit rate of 5%)."""
    from sklearn.metrics import roc_auc_score  # calibration time only

    fold_of = np.arange(len(y)) % inner
    grid = [(rank, c) for rank in ranks for c in cs]
    scores = np.zeros((len(grid), len(y)))
    for f in range(inner):
        tr, te = fold_of != f, fold_of == f
        basis = _basis(e[tr])
        for g, (rank, c) in enumerate(grid):
            fitted = _fit_head_fixed(x[tr], e[tr], y[tr], rank, c, basis)
            scores[g, te] = _predict_head(fitted, x[te], e[te])
    values = [float(roc_auc_score(y, row, max_fpr=HEAD_SELECTION_MAX_FPR)) for row in scores]
    best = int(np.argmax(values))  # first of equals: smaller rank, stronger L2
    model = _fit_head_fixed(x, e, y, *grid[best])
    model["inner_cv_partial_auc"] = values[best]
    return model


def _curve(
    scores: np.ndarray,
    y: np.ndarray,
    vetoed: np.ndarray,
    n_neg: int,
    confidence: float,
    max_rate: float = 0.2,
) -> tuple[OperatingPoint, ...]:
    """Thresholds just above the k-th highest non-duplicate score, k = 0, 1, 2, ..."""
    live = ~vetoed
    neg_scores = np.sort(scores[live & ~y])[::-1]
    pos_scores = scores[live & y]
    points: list[OperatingPoint] = []
    for k in range(len(neg_scores) + 1):
        upper = clopper_pearson_upper(k, n_neg, confidence)
        if upper > max_rate:
            break
        if k and k < len(neg_scores) and neg_scores[k] == neg_scores[k - 1]:
            continue  # ties: cannot admit the k-th without the (k+1)-th
        # Admit exactly the k highest-scoring non-duplicates: strictly above the (k+1)-th.
        threshold = float(np.nextafter(neg_scores[k], 2.0)) if k < len(neg_scores) else 0.0
        true_hits = int((pos_scores >= threshold).sum())
        points.append(OperatingPoint(threshold, k, true_hits, upper))
    return tuple(points)


def calibrate(
    pairs: Iterable[LabelledPair],
    embedder: Embedder,
    *,
    source: dict[str, Any] | None = None,
    split: dict[str, Any] | None = None,
    confidence: float = 0.9,
    folds: int = 5,
    cosines: Sequence[float] | None = None,
    vectors: Vectors | None = None,
    head: bool = True,
    head_ranks: Sequence[int] = HEAD_RANKS,
    head_cs: Sequence[float] = HEAD_CS,
) -> Calibration:
    """Fit the decision rule on labelled ``(a, b, duplicate)`` pairs for ``embedder``.

    Thresholds come from out-of-fold scores (the model never scores a pair it was fitted on)
    and the stored rate for each threshold is a Clopper–Pearson upper bound at
    ``confidence``. ``cosines`` or ``vectors`` (two row-aligned matrices of the pairs'
    embeddings) may be given to skip embedding (they must be ``embedder``'s). With vectors
    (given or computed) and ``head`` a pair head is fitted too, with its own nested
    out-of-fold curve; with only ``cosines`` there is no head.
    """
    rows = list(pairs)
    if not rows:
        raise CalibrationError("no pairs to calibrate on")
    if vectors is None and cosines is None:
        vectors = (embedder.embed([r[0] for r in rows]), embedder.embed([r[1] for r in rows]))
    e = vector_features(*vectors) if vectors is not None and head else None
    if cosines is None:
        assert vectors is not None
        cosines = np.einsum("ij,ij->i", np.asarray(vectors[0]), np.asarray(vectors[1])).tolist()
    y = np.array([bool(r[2]) for r in rows])
    x = np.vstack(
        [pair_features(a, b, float(c)) for (a, b, _), c in zip(rows, cosines, strict=True)]
    )
    vetoed = np.array([guard_reason(a, b) is not None for a, b, _ in rows])
    live = np.flatnonzero(~vetoed)
    if y[live].all() or not y[live].any():
        raise CalibrationError("calibration needs both duplicates and non-duplicates")
    # Out-of-fold scores, folds assigned deterministically by index.
    oof = np.zeros(len(rows))
    fold_of = np.arange(len(live)) % folds
    for f in range(folds):
        train, test = live[fold_of != f], live[fold_of == f]
        oof[test] = _predict(_fit_logistic(x[train], y[train]), x[test])
    model = _fit_logistic(x[live], y[live])
    n_neg, n_pos = int((~y).sum()), int(y.sum())
    head_model, head_curve = None, ()
    if e is not None:
        oof_head = np.zeros(len(rows))
        for f in range(folds):
            train, test = live[fold_of != f], live[fold_of == f]
            fitted = _fit_head(x[train], e[train], y[train], ranks=head_ranks, cs=head_cs)
            oof_head[test] = _predict_head(fitted, x[test], e[test])
        head_model = _fit_head(x[live], e[live], y[live], ranks=head_ranks, cs=head_cs)
        head_curve = _curve(oof_head, y, vetoed, n_neg, confidence)
    return Calibration(
        embedder=embedder.name,
        source=source or {},
        split=split or {"method": "all pairs given"},
        model=model,
        confidence=confidence,
        curve=_curve(oof, y, vetoed, n_neg, confidence),
        counts={
            "pairs": len(rows),
            "duplicates": n_pos,
            "non_duplicates": n_neg,
            "vetoed_by_guard": int(vetoed.sum()),
            "folds": folds,
        },
        head=head_model,
        head_curve=head_curve,
    )
