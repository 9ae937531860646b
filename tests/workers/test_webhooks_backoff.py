"""The webhook retry schedule: exponential from first_retry_s, capped, with up to 25% jitter."""

from __future__ import annotations

import pytest

from workers.webhooks import retry_delay_s


def test_the_schedule_doubles_from_the_first_retry_and_is_capped():
    no_jitter = [retry_delay_s(n, 10, 3600, rand=lambda: 0.0) for n in range(1, 11)]
    assert no_jitter == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600]


def test_jitter_adds_at_most_a_quarter():
    assert retry_delay_s(1, 1.0, 60, rand=lambda: 1.0) == pytest.approx(1.25)
    delays = [retry_delay_s(3, 1.0, 60) for _ in range(200)]
    assert all(4.0 <= d <= 5.0 for d in delays)
    assert len(set(delays)) > 1, "receivers are not hit in lockstep"
