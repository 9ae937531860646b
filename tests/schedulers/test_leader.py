"""The leader lease on a real Redis: one leader, takeover after a death, hand-over on resign."""

from __future__ import annotations

import time

from schedulers.leader import Leadership


def test_one_leads_and_a_standby_takes_over_when_it_dies(redis_client):
    first, second = Leadership(redis_client, lease_s=1), Leadership(redis_client, lease_s=1)
    assert first.lead()
    assert not second.lead()
    for _ in range(5):  # a live leader keeps renewing: the lease never lapses
        time.sleep(0.4)
        assert first.lead() and not second.lead()
    started = time.monotonic()  # the leader "dies": it stops renewing
    while not second.lead():
        time.sleep(0.05)
        assert time.monotonic() - started < 3, "the standby never took over"
    assert 0.5 < time.monotonic() - started <= 1.5
    time.sleep(0.4)
    assert not first.lead(), "the old leader learns it lost the lease"


def test_a_leader_that_stops_cleanly_hands_over_at_once(redis_client):
    first, second = Leadership(redis_client, lease_s=5), Leadership(redis_client, lease_s=5)
    assert first.lead() and not second.lead()
    first.resign()
    assert second.lead()
