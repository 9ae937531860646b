"""The daily-spend chart: a real PNG of a fixed size whatever the data, drawn without pyplot."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date, timedelta

import pytest
from PIL import Image

from broker.api.charts import HEIGHT, WIDTH, _saving, daily_spend_png
from broker.store.route_stats import RoutedDay

START = date(2026, 3, 1)


def series(days: int, **per_team: int) -> dict[str, dict[date, int]]:
    return {
        team: {START + timedelta(days=i): micros * (i % 4) for i in range(days)}
        for team, micros in per_team.items()
    }


def image(png: bytes) -> Image.Image:
    picture = Image.open(io.BytesIO(png))
    picture.load()  # decodes every pixel: a truncated file fails here
    return picture


@pytest.mark.parametrize(
    "data",
    [
        {},
        series(1, product=1),
        series(2, product=12),
        series(30, product=250_000, content=90_000),
        series(366, a=5_000_000, b=1, c=123_456_789),
        {"product": dict.fromkeys([START, START + timedelta(days=1)], 0)},
    ],
    ids=["empty", "one-micro", "micros", "month", "year-three-teams", "all-zero"],
)
def test_every_chart_is_a_png_of_the_fixed_size(data):
    picture = image(daily_spend_png(data))
    assert (picture.format, picture.size) == ("PNG", (WIDTH, HEIGHT)) == ("PNG", (1200, 600))


def test_the_same_data_draws_the_same_bytes_and_other_data_does_not():
    month = series(30, product=250_000, content=90_000)
    assert daily_spend_png(month) == daily_spend_png(month)
    assert daily_spend_png(month) != daily_spend_png(series(30, product=250_000))
    assert daily_spend_png({}) != daily_spend_png(month)


def test_charting_never_loads_pyplot_or_a_gui_backend():
    code = (
        "import sys\n"
        "from broker.api.charts import daily_spend_png\n"
        "daily_spend_png({})\n"
        "print('matplotlib.pyplot' in sys.modules, any('tkinter' in m for m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["False", "False"]


def routed(days: int, charged: int, flagship: int) -> dict[date, RoutedDay]:
    """What routed requests cost per day: ``charged`` and ``flagship`` micro-dollars, times
    ``i % 3`` (every third day nothing)."""
    return {
        START + timedelta(days=i): RoutedDay(i % 3, charged * (i % 3), flagship * (i % 3))
        for i in range(days)
    }


@pytest.mark.parametrize(
    ("data", "routing"),
    [
        (series(30, product=250_000, content=90_000), routed(30, 100_000, 240_000)),
        (series(1, product=1), routed(1, 0, 0) | {START: RoutedDay(1, 1, 3)}),
        (series(366, a=5_000_000, b=1), routed(366, 3_000_000, 2_000_000)),  # routing cost more
        ({}, routed(7, 40, 90)),  # routed money but no ledger rows in the window
    ],
    ids=["month", "one-micro", "year-costing-more", "routed-only"],
)
def test_a_chart_with_routed_requests_is_a_png_of_the_fixed_size(data, routing):
    png = daily_spend_png(data, routed=routing)
    picture = image(png)
    assert (picture.format, picture.size) == ("PNG", (WIDTH, HEIGHT))
    assert png != daily_spend_png(data), "the routing panel is drawn"


def test_routed_requests_without_money_leave_the_chart_as_it_was():
    month = series(30, product=250_000)
    free = {day: RoutedDay(requests=5) for day in month["product"]}  # cache hits: charged 0
    assert daily_spend_png(month, routed=free) == daily_spend_png(month)
    assert daily_spend_png(month, routed={}) == daily_spend_png(month)
    assert daily_spend_png({}, routed=free) == daily_spend_png({}), "still 'no spend yet'"


def test_the_routing_panel_draws_what_it_is_given():
    month = series(30, product=250_000)
    cheap = daily_spend_png(month, routed=routed(30, 100_000, 240_000))
    assert cheap == daily_spend_png(month, routed=routed(30, 100_000, 240_000))
    assert cheap != daily_spend_png(month, routed=routed(30, 100_000, 480_000))


def test_the_panel_title_says_what_routing_saved_or_cost():
    assert _saving(886_000, 1_941_400) == "$0.8860 charged, $1.9414 all on the flagship: 54.4% less"
    assert _saving(1_125, 1_000) == "$0.0011 charged, $0.0010 all on the flagship: 12.5% more"
    assert _saving(0, 0) == "$0.0000 charged, $0.0000 all on the flagship"
