"""PDF through matplotlib's PdfPages (no browser needed), A4 landscape.

Pages: the first page answers like the HTML's first screen (headline cards, the sentence on
the two emission methods, the site table filling the rest; ``FIRST_PAGE_ROWS`` rows, then
``OVERVIEW_ROWS_PER_PAGE`` a page); one page per charted scope (see
:func:`greendc.exporters.report.charts.chart_scopes`) with its KPI table beside its charts;
then the notes, sources and definitions (``NOTE_LINES_PER_PAGE`` lines a page). The same
figures, words and units as the HTML, from the same helpers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch
from matplotlib.transforms import Bbox

from greendc.exporters.report.charts import MAX_CHARTED_SITES, Scope, chart_scopes, draw_panels
from greendc.exporters.report.compute import FLEET, Report, Row
from greendc.exporters.report.fmt import (
    NOT_AVAILABLE,
    energy_scale,
    fmt_change,
    fmt_in,
    fmt_value,
    row_text,
)
from greendc.exporters.report.labels import MONTHS, kpi_label, period_name, site_name
from greendc.exporters.report.periods import Period
from greendc.exporters.report.summary import by_kpi, emissions_story, headline_cards

A4_LANDSCAPE = (11.69, 8.27)
FIRST_PAGE_ROWS = 12
OVERVIEW_ROWS_PER_PAGE = 24
SCOPE2 = ("scope2_location", "scope2_market")
NOTE_LINES_PER_PAGE = 34
GREEN, GREY, INK = "#1c4532", "#4a5568", "#1a202c"
_KEYS = ("E_DC", "E_IT", "pue", "ref", "scope2_location", "scope2_market", "cue")
_WIDTHS = (0.20, 0.10, 0.10, 0.07, 0.09, 0.15, 0.15, 0.14)


def _heads(e_unit: str) -> list[str]:
    return [
        "Site",
        f"Total energy\n({e_unit})",
        f"IT energy\n({e_unit})",
        "PUE",
        "Renewable\nshare (%)",
        "Emissions, location-\nbased (t CO₂e)",
        "Emissions, market-\nbased (t CO₂e)",
        "CUE\n(kg CO₂e/kWh)",
    ]


def _overview_rows(report: Report) -> tuple[list[list[str]], str]:
    entries: list[tuple[str, dict[str, Row], float | None]] = [
        (site_name(s.site), by_kpi(s.rows), s.site.targets.pue) for s in report.sites
    ]
    entries.append((f"Fleet ({len(report.sites)} sites)", by_kpi(report.fleet_rows), None))
    div, unit = energy_scale(
        [by[k].value for _, by, _ in entries for k in ("E_DC", "E_IT") if k in by]
    )
    rows = []
    for name, by, target in entries:
        cells = [name]
        for k in _KEYS:
            r = by.get(k)
            if r is None or r.value is None:
                cells.append(NOT_AVAILABLE if r is None else f"{NOT_AVAILABLE} ({r.status})")
            elif k in ("E_DC", "E_IT"):
                cells.append(fmt_in(r.value, div, 1 if div > 1 else 0))
            elif r.unit == "tCO2e":
                cells.append(fmt_in(r.value, 1.0, 1))
            else:
                text = fmt_value(r.value, r.unit, with_unit=False)
                if k == "pue" and target is not None and r.value > target:
                    text += " ▲"
                cells.append(text)
            if r is not None and r.value is not None and r.status == "incomplete":
                cells[-1] += " *"
        rows.append(cells)
    return rows, unit


def _title(fig: Figure, title: str, sub: str) -> None:
    fig.text(0.04, 0.945, title, fontsize=17, fontweight="bold", color=GREEN)
    fig.text(0.04, 0.912, sub, fontsize=9, color=GREY)


def _table(
    fig: Figure,
    rect: tuple[float, float, float, float],
    rows: Sequence[Sequence[str]],
    heads: Sequence[str],
    widths: Sequence[float],
    *,
    fontsize: float,
    bold_last: bool = False,
    head_lines: int = 1,
) -> None:
    """A table filling ``rect`` (figure fraction): rows share the height, up to a cap."""
    ax = fig.add_axes(rect)
    ax.axis("off")
    n = len(rows) + head_lines
    table = ax.table(
        cellText=[list(r) for r in rows],
        colLabels=list(heads),
        colWidths=list(widths),
        bbox=Bbox.from_bounds(0.0, max(0.0, 1.0 - n * 0.12), 1.0, min(1.0, n * 0.12)),
        cellLoc="right",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(fontsize)
    for (r, c), cell in table.get_celld().items():
        cell.set_edgecolor("#cbd5e0")
        cell.set_linewidth(0.5)
        text = cell.get_text()
        if r == 0:
            cell.set_facecolor("#2f855a")
            text.set_color("white")
            text.set_fontweight("bold")
            cell.set_height(cell.get_height() * (1 + (head_lines - 1) * 0.6))
        elif bold_last and r == len(rows):
            cell.set_facecolor("#f0fff4")
            text.set_fontweight("bold")
        elif r % 2 == 0:
            cell.set_facecolor("#f7fafc")
        if c == 0:
            text.set_horizontalalignment("left")
            cell.PAD = 0.03


def _cards(fig: Figure, report: Report, top: float) -> None:
    cards = headline_cards(report)
    if not cards:
        return
    gap, left, width = 0.012, 0.04, 0.92
    w = (width - gap * (len(cards) - 1)) / len(cards)
    h = 0.16
    for i, c in enumerate(cards):
        x = left + i * (w + gap)
        edge = "#c62828" if c.warn else "#2f855a"
        fig.patches.append(
            FancyBboxPatch(
                (x, top - h),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=0.006",
                transform=fig.transFigure,
                facecolor="#ffffff",
                edgecolor=edge,
                linewidth=1.2,
            )
        )
        fig.text(x + 0.008, top - 0.025, c.label, fontsize=8, color=GREY)
        fig.text(x + 0.008, top - 0.072, c.value, fontsize=17, fontweight="bold", color=INK)
        detail = "\n".join(textwrap.wrap(c.detail, 31)[:4])
        fig.text(x + 0.008, top - 0.088, detail, fontsize=7.5, color=GREY, va="top")


def _first_page(fig: Figure, report: Report, rows: Sequence[Sequence[str]], unit: str) -> None:
    _cards(fig, report, 0.885)
    why = "Why the two emission figures differ: " + emissions_story(report)
    fig.text(0.04, 0.705, "\n".join(textwrap.wrap(why, 165)[:3]), fontsize=8.5, va="top")
    _table(
        fig,
        (0.04, 0.09, 0.92, 0.56),
        rows,
        _heads(unit),
        _WIDTHS,
        fontsize=9,
        head_lines=2,
        bold_last=bool(rows) and rows[-1][0].startswith("Fleet"),
    )


def _short_change(r: Row, earlier: Period, *, last_year: bool) -> str:
    # The PDF table is narrow: the change without the earlier value (that is in the HTML);
    # the column header names the month, so "no data for <month>" becomes "no data".
    text = fmt_change(r, last_year=last_year, period_name=period_name(earlier))
    return "no data" if text.startswith("no data") else text.split(" (was", 1)[0]


def _kpi_rows(rows: Sequence[Row], report: Report) -> list[list[str]]:
    prev, last = report.period.previous(), report.period.last_year()
    out = []
    for r in rows:
        name = textwrap.shorten(kpi_label(r).name, 34, placeholder="…")
        out.append(
            [
                name,
                row_text(r),
                _short_change(r, prev, last_year=False),
                _short_change(r, last, last_year=True),
            ]
        )
    return out


def _short_month(p: Period) -> str:
    return f"{MONTHS[p.month - 1][:3]} {p.year}" if p.month else period_name(p)


def _kpi_heads(report: Report) -> list[str]:
    prev, last = report.period.previous(), report.period.last_year()
    return ["Figure", "Value", f"vs\n{_short_month(prev)}", f"vs\n{_short_month(last)}"]


def _scope_rows(report: Report, scope: Scope) -> list[Row]:
    if scope.key == FLEET:
        return report.fleet_rows
    return next(s.rows for s in report.sites if s.site.name == scope.key)


def _scope_page(fig: Figure, report: Report, scope: Scope) -> None:
    _title(fig, scope.name, scope.subtitle)
    grid = fig.add_gridspec(1, 1, left=0.06, right=0.62, top=0.86, bottom=0.08)
    draw_panels(fig, grid[0, 0], scope)
    rows = _kpi_rows(_scope_rows(report, scope), report)
    _table(
        fig,
        (0.655, 0.06, 0.325, 0.80),
        rows,
        _kpi_heads(report),
        (0.41, 0.25, 0.17, 0.17),
        fontsize=6.5,
        head_lines=2,
    )


def note_lines(report: Report) -> list[str]:
    """Every note, source and definition as wrapped lines, as printed on the notes pages."""
    lines: list[str] = []
    rest = _uncharted(report)
    if rest:
        # Drawing every figure of every site costs seconds a page: above MAX_CHARTED_SITES
        # sites the PDF stays an overview, and the HTML and XLSX carry each site's figures.
        lines.append(
            f"• {len(rest)} sites have no page of their own (more than {MAX_CHARTED_SITES} sites):"
            " their figures are in the HTML and XLSX, or run the report with --site."
        )
    for n in report.notes:
        lines += textwrap.wrap("• " + n, 150)
    for s in report.sites:
        lines.append(f"{site_name(s.site)} ({s.site.name}):")
        items = list(s.notes)
        items += [f"{kpi_label(r).name}: {r.note}" for r in s.rows if r.kpi in SCOPE2 and r.note]
        for n in items:
            lines += textwrap.wrap("  • " + n, 150, subsequent_indent="    ")
    lines.append("How the figures are defined:")
    seen = set()
    for r in report.rows:
        lab = kpi_label(r)
        if lab.name not in seen:
            seen.add(lab.name)
            lines += textwrap.wrap(f"  • {lab.name}: {lab.formula}", 150, subsequent_indent="    ")
    return lines


def _uncharted(report: Report) -> list[int]:
    charted = {s.key for s in chart_scopes(report)}
    return [i for i, s in enumerate(report.sites) if s.site.name not in charted]


def _chunks(n: int) -> list[tuple[int, int]]:
    out, start, size = [], 0, FIRST_PAGE_ROWS
    while start < n:
        out.append((start, min(n, start + size)))
        start, size = start + size, OVERVIEW_ROWS_PER_PAGE
    return out


def page_count(report: Report) -> int:
    """How many pages :func:`write_pdf` writes for this report."""
    lines = len(note_lines(report))
    return (
        len(_chunks(len(report.sites) + 1))
        + len(chart_scopes(report))
        + max(1, -(-lines // NOTE_LINES_PER_PAGE))
    )


def write_pdf(report: Report, out_dir: Path, stem: str) -> Path:
    """Write ``<stem>.pdf``."""
    path = out_dir / f"{stem}.pdf"
    overview, unit = _overview_rows(report)
    month = period_name(report.period)
    title = f"Energy and carbon report, {month}"
    n_sites = len(report.sites)
    sub = (
        f"{n_sites} site{'s' if n_sites != 1 else ''} · data from the {report.source} store · "
        f"generated {report.generated_utc:%d %B %Y %H:%M} UTC · each site's month in its own"
        " time zone · PUE for a month is interim"
    )
    foot = (
        "▲ PUE above the site's target. Fleet PUE is ΣE_DC/ΣE_IT over the sites, not an average"
        " of site PUEs; CUE is location-based. '—': withheld or not metered; '*': incomplete,"
        " under the coverage threshold (see the notes)."
    )
    page = 0

    def save(fig: Figure) -> None:
        nonlocal page
        page += 1
        fig.text(0.96, 0.02, f"page {page}", fontsize=8, color=GREY, ha="right")
        fig.text(0.04, 0.02, title, fontsize=8, color=GREY)
        pdf.savefig(fig)
        plt.close(fig)

    with PdfPages(path, metadata={"Title": title, "Creator": "greendc"}) as pdf:
        for i, (lo, hi) in enumerate(_chunks(len(overview))):
            fig = plt.figure(figsize=A4_LANDSCAPE)
            chunk = overview[lo:hi]
            last = hi == len(overview)
            if i == 0:
                _title(fig, title, sub)
                _first_page(fig, report, chunk, unit)
            else:
                _title(fig, "Sites at a glance (continued)", month)
                _table(
                    fig,
                    (0.04, 0.09, 0.92, 0.79),
                    chunk,
                    _heads(unit),
                    _WIDTHS,
                    fontsize=9,
                    head_lines=2,
                    bold_last=last,
                )
            fig.text(0.04, 0.045, foot, fontsize=7.5, color=GREY)
            save(fig)
        for scope in chart_scopes(report):
            fig = plt.figure(figsize=A4_LANDSCAPE)
            _scope_page(fig, report, scope)
            save(fig)
        lines = note_lines(report) or ["(no notes)"]
        for start in range(0, len(lines), NOTE_LINES_PER_PAGE):
            fig = plt.figure(figsize=A4_LANDSCAPE)
            _title(fig, "Data quality notes, sources and definitions", month)
            body = "\n".join(lines[start : start + NOTE_LINES_PER_PAGE])
            fig.text(0.04, 0.88, body, fontsize=8.5, va="top", linespacing=1.5)
            save(fig)
    return path


__all__ = ["note_lines", "page_count", "write_pdf"]
