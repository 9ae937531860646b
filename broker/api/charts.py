"""PNG charts of spend, drawn with matplotlib's Agg renderer.

``Figure`` and ``FigureCanvasAgg`` are used directly, never ``pyplot``: pyplot keeps global
figure state and picks a GUI backend from the environment, neither of which belongs in an API
worker thread. Each call builds, draws and drops its own figure, so concurrent requests share
nothing. The image is always :data:`WIDTH` × :data:`HEIGHT` pixels (no ``bbox_inches="tight"``,
which would crop it to its content), so pages and tests can rely on its size.

When routed requests cost anything in the window, a lower panel shows routing's saving per day:
what they were charged against what the same tokens would have cost on their routes' flagships.
It is a panel of its own rather than another hatched layer on the spend bars, because a cascade
that escalates often can cost more than the flagship alone, and a negative saving cannot be
stacked; side by side, a day where routing lost money shows as a filled bar above its outline.
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
from broker.store.route_stats import RoutedDay

WIDTH, HEIGHT, DPI = 1200, 600, 100
TITLE = "Daily spend per team (UTC)"
_MAX_DAY_LABELS = 16
_ROUTED_HEIGHT = 1 / 3  # the routing panel's height against the spend panel's


def _usd_places(step_usd: float) -> int:
    """Decimals that show a tick step of 1, 2 or 5 × 10^k dollars exactly: 2 to 6 (one micro)."""
    return min(6, max(2, math.ceil(-math.log10(step_usd) - 1e-9)))


def daily_spend_png(
    series: Mapping[str, Mapping[date, int]],
    *,
    avoided: Mapping[date, int] | None = None,
    routed: Mapping[date, RoutedDay] | None = None,
    title: str = TITLE,
) -> bytes:
    """Stacked bars, one per UTC day, one colour per team; money in USD. ``avoided`` (day →
    micro-dollars the response cache saved) is drawn as an outlined, hatched bar on top: what
    the day would have cost more without the cache. ``routed`` (day → what routed requests
    finishing that day were charged and would have cost all on the flagship, as
    :func:`broker.store.route_stats.daily_route_costs` returns it) adds the routing panel
    below, when any of it is money.

    ``series`` is team → day → micro-dollars with the same days for every team, as
    :func:`broker.store.reports.daily_spend_by_team` returns it. No teams (an empty ledger, or
    nothing in the window) still renders a chart, saying there is no spend yet.
    """
    figure = Figure(figsize=(WIDTH / DPI, HEIGHT / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    days = sorted({day for by_day in series.values() for day in by_day})
    saved = {day: n for day, n in (avoided or {}).items() if n}
    if saved and not days:
        days = sorted(avoided or {})
    routing = {
        day: r for day, r in (routed or {}).items() if r.cost_micros or r.flagship_cost_micros
    }
    if routing and not days:
        days = sorted(routed or {})
    if routing:
        axes, lower = figure.subplots(2, 1, sharex=True, height_ratios=(1, _ROUTED_HEIGHT))
    else:
        axes = lower = figure.add_subplot()
    axes.set_title(title)
    if not days:
        axes.text(
            0.5, 0.5, "no spend yet", ha="center", va="center", fontsize=16,
            transform=axes.transAxes, color="grey",
        )  # fmt: skip
        axes.set_xticks([])
        axes.set_yticks([])
    else:
        _stacked_bars(axes, series, days, saved)
        if routing:
            _routing_bars(lower, routing, days)
        _day_axis(lower, days)
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
    _usd_axis(axes, max(bottom), nbins=6)
    handles, labels = axes.get_legend_handles_labels()
    axes.figure.legend(handles, labels, title="team", loc="outside right upper", frameon=False)


def _routing_bars(axes, routed: Mapping[date, RoutedDay], days: list[date]) -> None:
    """Per day, routed requests' charge (filled) inside what the same tokens would have cost
    all on the flagship (outlined); the window's totals and saving in the title."""
    positions = range(len(days))
    empty = RoutedDay()
    charged = [routed.get(day, empty).cost_micros / MICROS_PER_USD for day in days]
    flagship = [routed.get(day, empty).flagship_cost_micros / MICROS_PER_USD for day in days]
    axes.bar(positions, charged, width=0.8, color="0.6", label="charged")
    axes.bar(
        positions, flagship, width=0.8, fill=False, edgecolor="black", linewidth=1,
        label="all on the flagship",
    )  # fmt: skip
    _usd_axis(axes, max(*charged, *flagship), nbins=3)
    spent = sum(routed.get(day, empty).cost_micros for day in days)
    counterfactual = sum(routed.get(day, empty).flagship_cost_micros for day in days)
    # Plain text: two "$" would otherwise be read as mathtext.
    axes.set_title(
        f"Routed requests: {_saving(spent, counterfactual)}", fontsize="medium", parse_math=False
    )
    handles, labels = axes.get_legend_handles_labels()
    axes.figure.legend(
        handles, labels, title="routed requests", loc="outside right lower", frameon=False
    )


def _saving(spent: int, counterfactual: int) -> str:
    """``$0.8860 charged, $1.9414 all on the flagship: 54.4% less``."""
    text = f"{format_usd(spent)} charged, {format_usd(counterfactual)} all on the flagship"
    if not counterfactual:
        return text
    share = 1 - spent / counterfactual
    return f"{text}: {abs(share):.1%} {'less' if share >= 0 else 'more'}"


def _usd_axis(axes, highest_usd: float, *, nbins: int) -> None:
    """A y axis in USD from 0 to a little over ``highest_usd``."""
    # Ticks on 1, 2 or 5 × 10^k dollars, never finer than a few micro-dollars (the ledger's
    # unit), each label exact at the decimals its step needs.
    top = max(highest_usd * 1.08, 6 / MICROS_PER_USD)
    locator = MaxNLocator(nbins=nbins, steps=[1, 2, 5, 10], min_n_ticks=2)
    ticks = locator.tick_values(0, top)
    places = _usd_places(ticks[1] - ticks[0])
    axes.yaxis.set_major_locator(locator)
    axes.yaxis.set_major_formatter(
        FuncFormatter(lambda usd, _: format_usd(round(usd * MICROS_PER_USD), places=places))
    )
    axes.set_ylim(0, top)
    axes.set_ylabel("USD")
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)


def _day_axis(axes, days: list[date]) -> None:
    """Day labels (at most :data:`_MAX_DAY_LABELS`) under the lowest panel."""
    every = max(1, math.ceil(len(days) / _MAX_DAY_LABELS))
    ticks = list(range(len(days)))[::every]
    axes.set_xticks(ticks, [days[i].strftime("%b %d") for i in ticks], rotation=45, ha="right")
    axes.set_xlim(-0.6, len(days) - 0.4)
    axes.set_xlabel("day (UTC)")
