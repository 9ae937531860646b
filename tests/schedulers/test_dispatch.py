"""How a round's tickets are packed into Celery messages (pure: no Redis)."""

from __future__ import annotations

import pytest

from schedulers.dispatch import chunks


@pytest.mark.parametrize(
    ("count", "most", "sizes"),
    [
        (0, 16, []),
        (1, 16, [1]),
        (16, 16, [16]),
        (17, 16, [9, 8]),
        (33, 16, [11, 11, 11]),
        (5, 1, [1, 1, 1, 1, 1]),
        (100, 32, [25, 25, 25, 25]),
    ],
)
def test_tickets_go_in_the_fewest_evenly_sized_messages(count, most, sizes):
    tickets = list(range(count))
    packed = chunks(tickets, most)
    assert [len(c) for c in packed] == sizes
    assert [t for c in packed for t in c] == tickets, "every ticket once, in pick order"
