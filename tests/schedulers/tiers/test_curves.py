"""The cost–quality curve: random is a line, the oracle bounds every router, AIQ and shares."""

from __future__ import annotations

import numpy as np
import pytest

from schedulers.tiers.curves import Curve, aiq, oracle_curve, random_curve, routing_curve

# Eight questions: (weak right, strong right).
WEAK = [True, True, True, False, False, False, True, False]
STRONG = [True, True, False, True, True, True, True, False]


def test_random_curve_is_the_line_and_its_aiq_the_mean_of_the_ends() -> None:
    curve = random_curve(WEAK, STRONG)
    weak, strong = np.mean(WEAK), np.mean(STRONG)
    assert curve.accuracy_at(0.0) == pytest.approx(weak)
    assert curve.accuracy_at(1.0) == pytest.approx(strong)
    assert curve.accuracy_at(0.3) == pytest.approx(weak + 0.3 * (strong - weak))
    assert curve.aiq() == pytest.approx((weak + strong) / 2)


def test_oracle_sends_only_the_questions_where_strong_alone_is_right() -> None:
    curve = oracle_curve(WEAK, STRONG)
    # Three questions (3, 4, 5) need the strong model; then accuracy is 7/8.
    assert curve.accuracy_at(3 / 8) == pytest.approx(7 / 8)
    # Strong-only accuracy (6/8) from 4/8 takes two of them: a share of 2/8.
    assert curve.strong_share_at(1.0) == pytest.approx(2 / 8)


@pytest.mark.parametrize("seed", range(5))
def test_oracle_bounds_any_router(seed: int) -> None:
    rng = np.random.default_rng(seed)
    weak = rng.random(200) < 0.6
    strong = rng.random(200) < 0.8
    scores = rng.random(200)
    router = routing_curve(scores, weak, strong)
    oracle = oracle_curve(weak, strong)
    assert oracle.aiq() >= router.aiq() - 1e-12
    for share in np.linspace(0, 1, 21):
        assert oracle.accuracy_at(share) >= router.accuracy_at(share) - 1e-12


def test_routing_curve_follows_scores_low_first() -> None:
    scores = [0.9, 0.8, 0.7, 0.1, 0.2, 0.3, 0.6, 0.5]  # a perfect ranking for WEAK/STRONG
    curve = routing_curve(scores, WEAK, STRONG)
    assert curve.shares[0] == 0.0 and curve.shares[-1] == 1.0
    assert curve.weak_accuracy == pytest.approx(4 / 8)
    assert curve.strong_accuracy == pytest.approx(6 / 8)
    assert curve.accuracy_at(3 / 8) == pytest.approx(7 / 8)
    # 95% of strong-only (0.75) is 0.7125: reached between 1/8 (5/8) and 2/8 (6/8).
    assert curve.strong_share_at(0.95) == pytest.approx(1 / 8 + (0.7125 - 5 / 8))
    assert curve.strong_share_at(0.5) == 0.0


def test_tied_scores_move_together() -> None:
    curve = routing_curve([0.5] * 8, WEAK, STRONG)
    assert list(curve.shares) == [0.0, 1.0]
    # With one tie block the share at 95% interpolates along the line, as random would.
    expected = random_curve(WEAK, STRONG).strong_share_at(0.95)
    assert curve.strong_share_at(0.95) == pytest.approx(expected, abs=1e-9)


def test_aiq_uses_the_non_decreasing_hull() -> None:
    # A curve that rises to 0.9 at share 0.5 and falls to 0.8: the hull stays at 0.9.
    curve = Curve(shares=np.array([0.0, 0.25, 0.5, 1.0]), accuracies=np.array([0.5, 0.6, 0.9, 0.8]))
    # Hull: (0, .5) -> (.5, .9) (the point at .25 lies below), then level at .9.
    assert aiq(curve) == pytest.approx(0.5 * (0.5 + 0.9) / 2 + 0.5 * 0.9)


def test_mismatched_lengths_are_rejected() -> None:
    with pytest.raises(ValueError):
        routing_curve([0.1, 0.2], [True], [True, False])
