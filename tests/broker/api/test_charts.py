"""The daily-spend chart: a real PNG of a fixed size whatever the data, drawn without pyplot."""

from __future__ import annotations

import io
import subprocess
import sys
from datetime import date, timedelta

import pytest
from PIL import Image

from broker.api.charts import HEIGHT, WIDTH, daily_spend_png

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
