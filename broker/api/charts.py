"""PNG charts of spend, drawn with matplotlib's Agg renderer.

``Figure`` and ``FigureCanvasAgg`` are used directly, never ``pyplot``: pyplot keeps global
figure state and picks a GUI backend from the environment, neither of which belongs in an API
worker thread. Each call builds, draws and drops its own figure, so concurrent requests share
nothing. The image is always :data:`WIDTH` × :data:`HEIGHT` pixels (no ``bbox_inches="tight"``,
which would crop it to its content), so pages and tests can rely on its size.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from datetime import date

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from broker.money import MICROS_PER_USD, format_usd

WIDTH, HEIGHT, DPI = 1200, 600, 100
TITLE = "Daily spend per team (UTC)"
_MAX_DAY_LABELS = 16


def _usd_places(step_usd: float) -> int:
    """Decimals that show a tick step of 1, 2 or 5 × 10^k dollars exactly: 2 to 6 (one micro)."""
    return min(6, max(2, math.ceil(-math.log10(step_usd) - 1e-9)))


def daily_spend_png(
    series: Mapping[str, Mapping[date, int]],
    *,
    avoided: Mapping[date, int] | None = None,
    title: str = TITLE,
) -> bytes:
    """Stacked bars, one per UTC day, one colour per team; money in USD. ``avoided`` (day →
    micro-dollars the response cache saved) is drawn as an outlined, hatched bar on top: what
    the day would have cost more without the cache.

    ``series`` is team → day → micro-dollars with the same days for every team, as
    :func:`broker.store.reports.daily_spend_by_team` returns it. No teams (an empty ledger, or
    nothing in the window) still renders a chart, saying there is no spend yet.
    """
    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    days = sorted({day for by_day in series.values() for day in by_day})
    saved = {day: n for day, n in (avoided or {}).items() if n}
    if saved and not days:
        days = sorted(avoided or {})
    if not days:
        axes.text(
            0.5, 0.5, "no spend yet", ha="center", va="center", fontsize=16,
            transform=axes.transAxes, color="grey",
        )  # fmt: skip
        axes.set_xticks([])
        axes.set_yticks([])
    else:
        _stacked_bars(axes, series, days, saved)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _stacked_bars(
    axes, series: Mapping[str, Mapping[date, int]], days: list[date], saved: Mapping[date, int]
) -> None:
    positions = range(len(days))
    bottom = [0.0] * len(days)
    for team in sorted(series):
        usd = [series[team].get(day, 0) / MICROS_PER_USD for day in days]
        axes.bar(positions, usd, bottom=bottom, label=team, width=0.8)
        bottom = [b + v for b, v in zip(bottom, usd, strict=True)]
    if saved:
        usd = [saved.get(day, 0) / MICROS_PER_USD for day in days]
        axes.bar(
            positions, usd, bottom=bottom, width=0.8, fill=False, hatch="//",
            edgecolor="grey", label="avoided by the cache",
        )  # fmt: skip
        bottom = [b + v for b, v in zip(bottom, usd, strict=True)]
    # Ticks on 1, 2 or 5 × 10^k dollars, never finer than a few micro-dollars (the ledger's
    # unit), each label exact at the decimals its step needs.
    top = max(max(bottom) * 1.08, 6 / MICROS_PER_USD)
    locator = MaxNLocator(nbins=6, steps=[1, 2, 5, 10], min_n_ticks=2)
    ticks = locator.tick_values(0, top)
    places = _usd_places(ticks[1] - ticks[0])
    axes.yaxis.set_major_locator(locator)
    axes.yaxis.set_major_formatter(
        FuncFormatter(lambda usd, _: format_usd(round(usd * MICROS_PER_USD), places=places))
    )
    axes.set_ylim(0, top)
    axes.set_ylabel("USD")
    every = max(1, math.ceil(len(days) / _MAX_DAY_LABELS))
    ticks = list(positions)[::every]
    axes.set_xticks(ticks, [days[i].strftime("%b %d") for i in ticks], rotation=45, ha="right")
    axes.set_xlim(-0.6, len(days) - 0.4)
    axes.set_xlabel("day (UTC)")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    axes.figure.legend(title="team", loc="outside right upper", frameon=False)
