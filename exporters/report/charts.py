"""The report's charts (matplotlib, Agg backend): one 2 x 2 figure per site or the fleet.

Panels: daily energy by role (stacked bars), daily PUE against the target, daily renewable
share (REF) against the target, and daily Scope 2 emissions by both methods. A day whose
figure is withheld is left blank, not drawn as zero.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from greendc.exporters.report.compute import DailyRow, Report

# Beyond this many sites only the fleet is charted (run with --site for one site's charts).
MAX_CHARTED_SITES = 12


def chart_scopes(
    report: Report,
) -> list[tuple[str, list[DailyRow], float | None, float | None]]:
    """What gets a chart page: (title, daily rows, PUE target, renewable target).

    The fleet when there is more than one site, then each site (up to MAX_CHARTED_SITES).
    """
    out: list[tuple[str, list[DailyRow], float | None, float | None]] = []
    if not report.fleet_daily:
        return out
    if len(report.sites) > 1:
        title = f"Fleet of {len(report.sites)} sites, {report.period.label}"
        out.append((title, report.fleet_daily, None, None))
    if len(report.sites) <= MAX_CHARTED_SITES:
        for s in report.sites:
            name = s.site.display_name or s.site.name
            title = f"{name} ({s.site.name}, {s.site.timezone}), {report.period.label}"
            t = s.site.targets
            out.append((title, s.daily, t.pue, t.renewable_share))
    return out


COLOURS = {
    "it": "#2b6cb0",
    "cooling": "#63b3ed",
    "lighting": "#f6ad55",
    "other": "#a0aec0",
    "unmetered": "#e2e8f0",
    "pue": "#2f855a",
    "target": "#c53030",
    "ref": "#38a169",
    "loc": "#4a5568",
    "mkt": "#dd6b20",
}


def _arr(rows: Sequence[DailyRow], attr: str) -> np.ndarray:
    return np.array(
        [np.nan if getattr(r, attr) is None else getattr(r, attr) for r in rows], dtype=float
    )


def _legend(ax: Axes, **kw: Any) -> None:
    # An empty legend warns (and tests turn warnings into errors): only draw one with entries.
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _headroom(ax: Axes) -> None:
    # Room above the tallest bar for the legend, so it never hides data.
    lo, hi = ax.get_ylim()
    ax.set_ylim(lo, hi + (hi - lo) * 0.22)


def daily_figure(
    rows: Sequence[DailyRow],
    title: str,
    *,
    pue_target: float | None = None,
    renewable_target: float | None = None,
    size_inches: tuple[float, float] = (11.0, 7.5),
) -> Figure:
    """The 2 x 2 chart figure for one site (or the fleet) over the days of ``rows``."""
    fig = plt.figure(figsize=size_inches)
    fig.suptitle(title, fontsize=14, fontweight="bold")
    axes = fig.subplots(2, 2)
    # Fixed margins: constrained layout costs seconds per figure on a busy machine.
    fig.subplots_adjust(left=0.07, right=0.98, top=0.90, bottom=0.07, hspace=0.32, wspace=0.18)
    days = [r.day for r in rows]
    x = mdates.date2num(days) if days else np.array([])
    it = _arr(rows, "e_it_kwh")
    cool = _arr(rows, "cooling_kwh")
    light = _arr(rows, "lighting_kwh")
    other = _arr(rows, "other_overhead_kwh")
    dc = _arr(rows, "e_dc_kwh")

    ax = axes[0][0]
    bottom = np.zeros(len(rows))
    for series, name, key in (
        (it, "IT", "it"),
        (cool, "cooling", "cooling"),
        (light, "lighting", "lighting"),
        (other, "other overhead", "other"),
    ):
        if np.all(np.isnan(series)):
            continue
        vals = np.nan_to_num(series)
        ax.bar(x, vals / 1000.0, bottom=bottom / 1000.0, width=0.8, label=name, color=COLOURS[key])
        bottom = bottom + vals
    rest = dc - bottom
    if not np.all(np.isnan(rest)):
        # Facility energy no sub-meter accounts for (losses, unmetered loads).
        ax.bar(
            x,
            np.clip(np.nan_to_num(rest), 0, None) / 1000.0,
            bottom=bottom / 1000.0,
            width=0.8,
            label="not sub-metered",
            color=COLOURS["unmetered"],
        )
    ax.set_title("Daily energy by role")
    ax.set_ylabel("MWh")
    _headroom(ax)
    _legend(ax, fontsize=7, loc="upper left", ncols=5)

    ax = axes[0][1]
    pue = _arr(rows, "pue")
    ax.plot(x, pue, marker="o", markersize=3, color=COLOURS["pue"], label="daily PUE (interim)")
    if pue_target is not None:
        ax.axhline(
            pue_target, color=COLOURS["target"], linestyle="--", label=f"target {pue_target}"
        )
    finite = pue[np.isfinite(pue)]
    lo = min([*finite.tolist(), pue_target or 9.0, 1.5])
    hi = max([*finite.tolist(), pue_target or 0.0, 1.0])
    ax.set_ylim(max(1.0, lo - 0.1), hi + 0.15)
    ax.set_title("Daily PUE against target")
    _legend(ax, fontsize=7, loc="upper right")

    ax = axes[1][0]
    ref = _arr(rows, "ref")
    ax.bar(x, ref * 100.0, width=0.8, color=COLOURS["ref"], label="renewable share (REF)")
    if renewable_target is not None:
        ax.axhline(
            renewable_target * 100.0,
            color=COLOURS["target"],
            linestyle="--",
            label=f"target {renewable_target:.0%}",
        )
    ax.set_ylim(0, 115)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("%")
    ax.set_title("Daily renewable share")
    _legend(ax, fontsize=7, loc="upper right")

    ax = axes[1][1]
    loc = _arr(rows, "scope2_location_t")
    mkt = _arr(rows, "scope2_market_t")
    ax.bar(x - 0.2, loc, width=0.4, color=COLOURS["loc"], label="location-based")
    ax.bar(x + 0.2, mkt, width=0.4, color=COLOURS["mkt"], label="market-based")
    ax.set_ylabel("tCO2e")
    ax.set_title("Daily Scope 2 emissions")
    _headroom(ax)
    _legend(ax, fontsize=7, loc="upper left", ncols=2)

    month = days[0].strftime("%B %Y") if days else ""
    for row_axes in axes:
        for a in row_axes:
            a.xaxis.set_major_locator(mdates.DayLocator(bymonthday=range(1, 32, 3)))
            a.xaxis.set_major_formatter(mdates.DateFormatter("%d"))
            if len(x):
                a.set_xlim(x[0] - 0.7, x[-1] + 0.7)
            a.set_xlabel(month, fontsize=8)
            a.tick_params(axis="x", labelsize=8)
            a.grid(axis="y", alpha=0.3)
    return fig


def figure_png(fig: Figure, dpi: int = 96) -> bytes:
    """The figure as PNG bytes; closes the figure."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def close(fig: Figure) -> None:
    """Release a figure's memory."""
    plt.close(fig)


__all__ = ["MAX_CHARTED_SITES", "chart_scopes", "close", "daily_figure", "figure_png"]
