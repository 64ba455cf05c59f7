"""PDF through matplotlib's PdfPages (no browser needed), A4 landscape.

Pages: the overview table (``SITES_PER_PAGE`` sites a page, the fleet row on the last),
the notes and factor sources (``NOTE_LINES_PER_PAGE`` lines a page), then one chart page per
charted scope (see :func:`greendc.exporters.report.charts.chart_scopes`).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.backends.backend_pdf import PdfPages

from greendc.exporters.report.charts import chart_scopes, daily_figure
from greendc.exporters.report.compute import Report, Row
from greendc.exporters.report.fmt import fmt_value

A4_LANDSCAPE = (11.69, 8.27)
SITES_PER_PAGE = 22
SCOPE2 = ("scope2_location", "scope2_market")
NOTE_LINES_PER_PAGE = 34
_KEYS = ("E_DC", "E_IT", "pue", "ref", "scope2_location", "scope2_market", "cue")
_HEADS = (
    "site",
    "E_DC (kWh)",
    "E_IT (kWh)",
    "PUE (interim)",
    "REF (%)",
    "Scope 2 loc. (tCO2e)",
    "Scope 2 mkt. (tCO2e)",
    "CUE (kg/kWh)",
)
_WIDTHS = (0.12, 0.13, 0.13, 0.10, 0.07, 0.16, 0.16, 0.13)


def _cell(r: Row | None) -> str:
    if r is None:
        return ""
    return fmt_value(r.value, r.unit, with_unit=False) if r.value is not None else r.status


def _overview_rows(report: Report) -> list[list[str]]:
    rows = []
    for s in report.sites:
        by = {r.kpi: r for r in s.rows}
        rows.append([s.site.name] + [_cell(by.get(k)) for k in _KEYS])
    fb = {r.kpi: r for r in report.fleet_rows}
    if "fleet_pue" in fb:
        fb["pue"] = fb["fleet_pue"]
    rows.append(["fleet"] + [_cell(fb.get(k)) for k in _KEYS])
    return rows


def note_lines(report: Report) -> list[str]:
    """Every note and source as wrapped lines, as printed on the notes pages."""
    lines: list[str] = []
    for n in report.notes:
        lines += textwrap.wrap("• " + n, 130)
    for s in report.sites:
        lines.append(f"{s.site.name}:")
        items = list(s.notes)
        items += [f"{r.label}: {r.note}" for r in s.rows if r.kpi in SCOPE2 and r.note]
        for n in items:
            lines += textwrap.wrap("  • " + n, 130, subsequent_indent="    ")
    return lines


def page_count(report: Report) -> int:
    """How many pages :func:`write_pdf` writes for this report."""
    sites = len(report.sites) + 1
    lines = len(note_lines(report))
    return (
        -(-sites // SITES_PER_PAGE)
        + max(1, -(-lines // NOTE_LINES_PER_PAGE))
        + len(chart_scopes(report))
    )


def write_pdf(report: Report, out_dir: Path, stem: str) -> Path:
    """Write ``<stem>.pdf``."""
    path = out_dir / f"{stem}.pdf"
    overview = _overview_rows(report)
    title = f"Energy and carbon report, {report.period.label}"
    with PdfPages(path, metadata={"Title": title, "Creator": "greendc"}) as pdf:
        chunks = [overview[i : i + SITES_PER_PAGE] for i in range(0, len(overview), SITES_PER_PAGE)]
        for i, chunk in enumerate(chunks):
            fig = plt.figure(figsize=A4_LANDSCAPE)
            fig.text(0.04, 0.94, title, fontsize=18, fontweight="bold", color="#22543d")
            sub = (
                f"{len(report.sites)} site(s) · data from {report.source} · generated "
                f"{report.generated_utc:%Y-%m-%d %H:%M} UTC · months in each site's time zone"
                f" · PUE for a month is interim · page {i + 1} of the overview"
            )
            fig.text(0.04, 0.90, sub, fontsize=9, color="#4a5568")
            ax = fig.add_axes((0.04, 0.05, 0.92, 0.82))
            ax.axis("off")
            table = ax.table(
                cellText=chunk,
                colLabels=_HEADS,
                colWidths=list(_WIDTHS),
                loc="upper center",
                cellLoc="right",
            )
            table.auto_set_font_size(False)
            table.set_fontsize(9)
            table.scale(1, 1.6)
            for (r, c), cell in table.get_celld().items():
                if r == 0:
                    cell.set_facecolor("#2f855a")
                    cell.get_text().set_color("white")
                    cell.get_text().set_fontweight("bold")
                if c == 0:
                    cell.get_text().set_horizontalalignment("left")
            fig.text(
                0.04,
                0.03,
                "Fleet PUE = ΣE_DC/ΣE_IT over the sites (not an average of site PUEs);\nfleet CUE"
                " = Σ location-based CO2e / ΣE_IT. CUE is location-based, kgCO2e/kWh."
                " '—' or a status: withheld or not metered (see the notes page).",
                fontsize=8,
                color="#4a5568",
            )
            pdf.savefig(fig)
            plt.close(fig)
        lines = note_lines(report) or ["(no notes)"]
        for start in range(0, len(lines), NOTE_LINES_PER_PAGE):
            fig = plt.figure(figsize=A4_LANDSCAPE)
            fig.text(0.04, 0.94, "Data quality notes and sources", fontsize=14, fontweight="bold")
            body = "\n".join(lines[start : start + NOTE_LINES_PER_PAGE])
            fig.text(0.04, 0.90, body, fontsize=9, va="top", linespacing=1.5)
            pdf.savefig(fig)
            plt.close(fig)
        for scope_title, rows, pue_t, ren_t in chart_scopes(report):
            fig = daily_figure(
                rows,
                scope_title,
                pue_target=pue_t,
                renewable_target=ren_t,
                size_inches=A4_LANDSCAPE,
            )
            pdf.savefig(fig)
            plt.close(fig)
    return path


__all__ = ["note_lines", "page_count", "write_pdf"]
