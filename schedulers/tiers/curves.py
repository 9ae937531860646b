"""The cost–quality curve of a two-tier router, and the numbers read off it.

A router gives every question a score, P(the cheaper tier's answer is acceptable); a threshold
sends the lowest-scored questions to the strong model. Sweeping the threshold traces accuracy
against the share of strong calls, from all-weak (share 0) to all-strong (share 1). Cost is the
strong share: the weak model's price is small next to the flagship's, and RouterBench's
normalised cost ``(c - c_weak) / (c_strong - c_weak)`` is exactly that share when the weak
model is free.

- :func:`routing_curve` — a score vector's curve (tied scores move together: one threshold
  cannot split them);
- :func:`random_curve` — random routing: the straight line between the two models;
- :func:`oracle_curve` — routing that knows the answers (strong only where it alone is right);
- :func:`aiq` — RouterBench's Average Improvement in Quality (arXiv 2403.12031): the area
  under the non-decreasing convex hull of the curve's points over normalised cost [0, 1]. The
  hull counts as reachable because mixing two thresholds at random reaches any point between;
- :meth:`Curve.strong_share_at` — the least strong share whose accuracy reaches a fraction of
  strong-only accuracy (the RouteLLM paper's headline: 95%).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Curve", "aiq", "oracle_curve", "random_curve", "routing_curve"]


@dataclass(frozen=True)
class Curve:
    """Accuracy against strong share at the points a threshold can reach, share ascending.

    The first point is share 0 (all weak), the last share 1 (all strong).
    """

    shares: np.ndarray
    accuracies: np.ndarray

    @property
    def weak_accuracy(self) -> float:
        return float(self.accuracies[0])

    @property
    def strong_accuracy(self) -> float:
        return float(self.accuracies[-1])

    def accuracy_at(self, share: float) -> float:
        """Accuracy at ``share`` strong calls, interpolated between the curve's points."""
        return float(np.interp(share, self.shares, self.accuracies))

    def strong_share_at(self, fraction_of_strong_accuracy: float = 0.95) -> float:
        """Least strong share whose accuracy is at least that fraction of strong-only accuracy.

        Reads the curve's own points (no hull, no mixing): a share a single threshold reaches.
        Between two points the share is interpolated, so a curve with few points is not
        penalised for its coarseness.
        """
        target = fraction_of_strong_accuracy * self.strong_accuracy
        reached = np.flatnonzero(self.accuracies >= target - 1e-12)
        if reached.size == 0:
            return 1.0
        first = int(reached[0])
        if first == 0:
            return 0.0
        x0, x1 = self.shares[first - 1], self.shares[first]
        y0, y1 = self.accuracies[first - 1], self.accuracies[first]
        return float(x0 + (x1 - x0) * (target - y0) / (y1 - y0)) if y1 > y0 else float(x1)

    def aiq(self) -> float:
        """RouterBench's AIQ of this curve (see :func:`aiq`)."""
        return aiq(self)


def _as_flags(values: Sequence[bool] | np.ndarray) -> np.ndarray:
    return np.asarray(values, dtype=bool).reshape(-1)


def routing_curve(
    scores: Sequence[float] | np.ndarray,
    weak_correct: Sequence[bool] | np.ndarray,
    strong_correct: Sequence[bool] | np.ndarray,
) -> Curve:
    """The curve of routing by ``scores`` (low score → strong) over every threshold."""
    score = np.asarray(scores, dtype=np.float64).reshape(-1)
    weak, strong = _as_flags(weak_correct), _as_flags(strong_correct)
    n = score.size
    if n == 0 or weak.size != n or strong.size != n:
        raise ValueError(f"need equal, non-empty lengths: {n}, {weak.size}, {strong.size}")
    order = np.argsort(score, kind="stable")
    gain = strong[order].astype(np.float64) - weak[order].astype(np.float64)
    accuracy = np.concatenate([[0.0], np.cumsum(gain)]) / n + weak.mean()
    # A threshold can only stop at the end of a block of tied scores.
    sorted_scores = score[order]
    ends = np.concatenate([np.flatnonzero(np.diff(sorted_scores) > 0) + 1, [n]])
    counts = np.concatenate([[0], ends])
    return Curve(shares=counts / n, accuracies=accuracy[counts])


def random_curve(
    weak_correct: Sequence[bool] | np.ndarray, strong_correct: Sequence[bool] | np.ndarray
) -> Curve:
    """Random routing's expected curve: a straight line from all-weak to all-strong."""
    weak, strong = _as_flags(weak_correct).mean(), _as_flags(strong_correct).mean()
    shares = np.linspace(0.0, 1.0, 101)
    return Curve(shares=shares, accuracies=weak + shares * (strong - weak))


def oracle_curve(
    weak_correct: Sequence[bool] | np.ndarray, strong_correct: Sequence[bool] | np.ndarray
) -> Curve:
    """The best any router can do: strong first where only it is right, last where only weak is."""
    weak, strong = _as_flags(weak_correct), _as_flags(strong_correct)
    scores = np.where(~weak & strong, 0.0, np.where(weak & ~strong, 1.0, 0.5))
    return routing_curve(scores, weak, strong)


def _upper_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Upper convex hull of points sorted by x (Andrew's monotone chain)."""
    hull: list[tuple[float, float]] = []
    for point in zip(x.tolist(), y.tolist(), strict=True):
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            # Drop the middle point when it lies on or below the chord to the new point.
            if (x2 - x1) * (point[1] - y1) - (y2 - y1) * (point[0] - x1) >= 0:
                hull.pop()
            else:
                break
        hull.append(point)
    hx, hy = zip(*hull, strict=True)
    return np.asarray(hx), np.asarray(hy)


def aiq(curve: Curve) -> float:
    """Area under the non-decreasing convex hull of the curve's points, over share in [0, 1].

    The upper hull is concave, so it rises to its highest vertex and then may fall; the
    non-decreasing hull stays level from there (spending more never has to lose quality).
    """
    x = np.asarray(curve.shares, dtype=np.float64)
    y = np.asarray(curve.accuracies, dtype=np.float64)
    hx, hy = _upper_hull(x, y)
    peak = int(np.argmax(hy))
    hx, hy = hx[: peak + 1], hy[: peak + 1]
    if hx[-1] < 1.0:
        hx, hy = np.append(hx, 1.0), np.append(hy, hy[-1])
    if hx[0] > 0.0:
        hx, hy = np.insert(hx, 0, 0.0), np.insert(hy, 0, hy[0])
    return float(np.trapezoid(hy, hx))
