"""The report's charts (matplotlib, Agg backend): four daily panels per site or the fleet.

Panels: daily energy by role (stacked bars), daily PUE against the target, daily renewable
share (REF) against the target, and daily Scope 2 emissions by both methods. A day whose
figure is withheld is left blank, not drawn as zero. Each axis is scaled to its data (and
the target, when there is one); market-based is drawn only where it differs from
location-based; legends sit inside the axes, above the data. The palette keeps its order in
greyscale (dark to light, with hatching where two series sit side by side).

The HTML draws each panel as its own small figure (legible on a phone); the PDF draws the
four into one area of a page beside the site's KPI table.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from matplotlib.ticker import FuncFormatter

from greendc.exporters.report.compute import FLEET, DailyRow, Report
from greendc.exporters.report.labels import period_name, site_name

# Beyond this many sites only the fleet is charted (run with --site for one site's charts).
MAX_CHARTED_SITES = 12


@dataclass(frozen=True)
class Scope:
    """What one set of charts is about: the fleet or one site, with its targets."""

    key: str  # the site code, or "fleet"
    name: str  # the name people use
    subtitle: str
    rows: Sequence[DailyRow]
    pue_target: float | None
    renewable_target: float | None


def chart_scopes(report: Report) -> list[Scope]:
    """What gets charts: the fleet when there is more than one site, then each site (up to
    ``MAX_CHARTED_SITES``)."""
    out: list[Scope] = []
    if not report.fleet_daily:
        return out
    month = period_name(report.period)
    if len(report.sites) > 1:
        name = f"Fleet of {len(report.sites)} sites"
        out.append(Scope(FLEET, name, month, report.fleet_daily, None, None))
    if len(report.sites) <= MAX_CHARTED_SITES:
        for s in report.sites:
            sub = f"{s.site.name} · {s.site.timezone} · {month}"
            t = s.site.targets
            # A renewable target of 0 is the config's "none set": no target line for it.
            ren = t.renewable_share or None
            out.append(Scope(s.site.name, site_name(s.site), sub, s.daily, t.pue, ren))
    return out


# Ordered dark to light so stacked bars stay apart in greyscale.
COLOURS = {
    "it": "#1f3f73",
    "cooling": "#3c8dbc",
    "lighting": "#f0a04b",
    "other": "#8c8c8c",
    "unmetered": "#dcdcdc",
    "pue": "#1b5e20",
    "target": "#c62828",
    "ref": "#2e7d32",
    "loc": "#37474f",
    "mkt": "#ef8a3a",
}
PANEL_TITLES = (
    "Daily energy by role",
    "Daily PUE against target",
    "Daily renewable share",
    "Daily Scope 2 emissions",
)


def _arr(rows: Sequence[DailyRow], attr: str) -> np.ndarray:
    return np.array(
        [np.nan if getattr(r, attr) is None else getattr(r, attr) for r in rows], dtype=float
    )


def _legend(ax: Axes, ncols: int = 2) -> None:
    # An empty legend warns (and tests turn warnings into errors): only draw one with entries.
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="upper left", ncols=ncols, framealpha=0.9, borderaxespad=0.3)


def _room_above(ax: Axes, lo: float, hi: float, share: float = 0.3) -> None:
    # Room above the data for the legend, so it never hides a bar or a point.
    span = (hi - lo) or abs(hi) or 1.0
    ax.set_ylim(lo, hi + span * share)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2, 2.5 or 5 x 10^n at or above ``value`` (1 for zero or less)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    base = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * base >= value * (1 - 1e-12):
            return step * base
    return 10 * base


def energy_panel(ax: Axes, x: np.ndarray, rows: Sequence[DailyRow]) -> None:
    """Daily energy by role, stacked, in MWh."""
    bottom = np.zeros(len(rows))
    for attr, name, key in (
        ("e_it_kwh", "IT", "it"),
        ("cooling_kwh", "cooling", "cooling"),
        ("lighting_kwh", "lighting", "lighting"),
        ("other_overhead_kwh", "other overhead", "other"),
    ):
        series = _arr(rows, attr)
        if np.all(np.isnan(series)):
            continue
        vals = np.nan_to_num(series)
        ax.bar(x, vals / 1000.0, bottom=bottom / 1000.0, width=0.8, label=name, color=COLOURS[key])
        bottom = bottom + vals
    rest = _arr(rows, "e_dc_kwh") - bottom
    if not np.all(np.isnan(rest)):
        # Facility energy no sub-meter accounts for (losses, unmetered loads).
        ax.bar(
            x,
            np.clip(np.nan_to_num(rest), 0, None) / 1000.0,
            bottom=bottom / 1000.0,
            width=0.8,
            label="not sub-metered",
            color=COLOURS["unmetered"],
            hatch="///",
            edgecolor="#9e9e9e",
            linewidth=0,
        )
    top = np.nanmax(np.fmax(bottom, np.nan_to_num(_arr(rows, "e_dc_kwh")))) if len(rows) else 0
    _room_above(ax, 0.0, float(top) / 1000.0 or 1.0, 0.35)
    ax.set_ylabel("MWh per day")
    _legend(ax, ncols=3)


def pue_panel(ax: Axes, x: np.ndarray, rows: Sequence[DailyRow], target: float | None) -> None:
    """Daily PUE with the target (when set) inside the range."""
    pue = _arr(rows, "pue")
    ax.plot(x, pue, marker="o", markersize=3, color=COLOURS["pue"], label="daily PUE (interim)")
    values = [float(v) for v in pue[np.isfinite(pue)]]
    if target is not None:
        ax.axhline(target, color=COLOURS["target"], linestyle="--", label=f"target {target:.2f}")
        values.append(target)
    if values:
        lo, hi = min(values), max(values)
        pad = max(0.02, (hi - lo) * 0.15)
        bottom = max(1.0, lo - pad) if lo >= 1.0 else lo - pad
        _room_above(ax, bottom, hi + pad, 0.3)
    ax.set_ylabel("PUE")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2f}"))
    _legend(ax)


def ref_panel(ax: Axes, x: np.ndarray, rows: Sequence[DailyRow], target: float | None) -> None:
    """Daily renewable share in %, on an axis that fits the data and the target."""
    ref = _arr(rows, "ref") * 100.0
    ax.bar(x, ref, width=0.8, color=COLOURS["ref"], label="renewable share (REF)")
    values = [float(v) for v in ref[np.isfinite(ref)]]
    if target is not None:
        ax.axhline(
            target * 100.0,
            color=COLOURS["target"],
            linestyle="--",
            label=f"target {target * 100:g} %",
        )
        values.append(target * 100.0)
    # Headroom for the legend; at most 130 % (ticks stop at 100 %) when a day is all renewable.
    top = min(nice_ceiling(max(values, default=0.0) * 1.35), 130.0)
    ax.set_ylim(0.0, top)
    if top > 100:
        ax.set_yticks(range(0, 101, 20))
    decimals = 0 if top >= 5 else 1 if top >= 0.5 else 2
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.{decimals}f} %"))
    ax.set_ylabel("share of total energy")
    _legend(ax)


def emissions_equal(rows: Sequence[DailyRow]) -> bool:
    """Whether market-based equals location-based on every day (then only one is drawn)."""
    loc, mkt = _arr(rows, "scope2_location_t"), _arr(rows, "scope2_market_t")
    return bool(np.allclose(loc, mkt, rtol=1e-9, atol=0.0, equal_nan=True))


def emissions_panel(ax: Axes, x: np.ndarray, rows: Sequence[DailyRow]) -> None:
    """Daily Scope 2, both methods side by side, or one bar when they are the same."""
    loc, mkt = _arr(rows, "scope2_location_t"), _arr(rows, "scope2_market_t")
    if emissions_equal(rows):
        ax.bar(x, loc, width=0.8, color=COLOURS["loc"], label="location- = market-based")
    else:
        ax.bar(x - 0.2, loc, width=0.4, color=COLOURS["loc"], label="location-based")
        ax.bar(
            x + 0.2,
            mkt,
            width=0.4,
            color=COLOURS["mkt"],
            hatch="...",
            edgecolor="#8a4a12",
            linewidth=0,
            label="market-based",
        )
    top = np.nanmax(np.fmax(loc, mkt)) if np.any(np.isfinite(np.fmax(loc, mkt))) else 0.0
    _room_above(ax, 0.0, float(top) or 1.0, 0.3)
    ax.set_ylabel("t CO₂e per day")
    _legend(ax)


def _x_axis(ax: Axes, x: np.ndarray, rows: Sequence[DailyRow], step_days: int = 5) -> None:
    ax.xaxis.set_major_locator(mdates.DayLocator(bymonthday=range(1, 32, step_days)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%-d %b"))
    if len(x):
        ax.set_xlim(x[0] - 0.7, x[-1] + 0.7)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def _panels(
    scope: Scope,
) -> list[Callable[[Axes, np.ndarray], None]]:
    rows = scope.rows
    return [
        lambda ax, x: energy_panel(ax, x, rows),
        lambda ax, x: pue_panel(ax, x, rows, scope.pue_target),
        lambda ax, x: ref_panel(ax, x, rows, scope.renewable_target),
        lambda ax, x: emissions_panel(ax, x, rows),
    ]


def _x(rows: Sequence[DailyRow]) -> np.ndarray:
    days = [r.day for r in rows]
    return np.asarray(mdates.date2num(days)) if days else np.array([])


def panel_figures(scope: Scope, size_inches: tuple[float, float] = (5.0, 3.1)) -> list[Figure]:
    """The four panels as separate small figures (the HTML lays them out in a grid)."""
    x = _x(scope.rows)
    out = []
    for title, draw in zip(PANEL_TITLES, _panels(scope), strict=True):
        fig = plt.figure(figsize=size_inches)
        ax = fig.add_subplot()
        # Fixed margins: constrained layout costs seconds per figure on a busy machine.
        fig.subplots_adjust(left=0.15, right=0.97, top=0.90, bottom=0.12)
        draw(ax, x)
        ax.set_title(title, fontsize=11)
        _x_axis(ax, x, scope.rows)
        out.append(fig)
    return out


def draw_panels(fig: Figure, area: SubplotSpec, scope: Scope) -> list[Axes]:
    """The four panels in a 2 x 2 grid inside ``area`` of ``fig`` (a PDF page)."""
    grid = area.subgridspec(2, 2, hspace=0.38, wspace=0.34)
    x = _x(scope.rows)
    axes = []
    for i, (title, draw) in enumerate(zip(PANEL_TITLES, _panels(scope), strict=True)):
        ax = fig.add_subplot(grid[i // 2, i % 2])
        draw(ax, x)
        ax.set_title(title, fontsize=10)
        ax.yaxis.label.set_fontsize(8)
        _x_axis(ax, x, scope.rows, step_days=7)
        axes.append(ax)
    return axes


def figure_png(fig: Figure, dpi: int = 110, **kw: Any) -> bytes:
    """The figure as PNG bytes; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, **kw)
    plt.close(fig)
    return buf.getvalue()


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)


__all__ = [
    "COLOURS",
    "MAX_CHARTED_SITES",
    "PANEL_TITLES",
    "Scope",
    "chart_scopes",
    "close",
    "draw_panels",
    "emissions_equal",
    "figure_png",
    "nice_ceiling",
    "panel_figures",
]
