"""Tidy CSV: one row per site (or ``fleet``) and KPI, with its unit, coverage and status.

Values are written in full precision (``repr`` of the float) so a spreadsheet or script gets
exactly what was computed; an empty cell means withheld (see ``status`` and ``note``).
``status`` is ok, incomplete or withheld (or "from contracts"); the shares say how much of
the period was measured, bridged across gaps, or missing.
"""

from __future__ import annotations

import csv
from pathlib import Path

from greendc.exporters.report.compute import DAILY_COLUMNS, Report, Row

ROW_COLUMNS = (
    "period",
    "site",
    "kpi",
    "label",
    "value",
    "unit",
    "coverage",
    "status",
    "measured_share",
    "bridged_share",
    "missing_share",
    "note",
    "prev_month",
    "change_prev_month",
    "last_year",
    "change_last_year",
)


def num(value: float | None) -> str:
    """A float in full precision, or an empty cell."""
    return "" if value is None else repr(float(value))


def row_record(period: str, r: Row) -> list[str]:
    """One tidy row as CSV cells."""
    return [
        period,
        r.site,
        r.kpi,
        r.label,
        num(r.value),
        r.unit,
        num(r.coverage),
        str(r.status),
        num(r.measured_share),
        num(r.bridged_share),
        num(r.missing_share),
        r.note,
        num(r.prev_month),
        num(r.change_prev_month),
        num(r.last_year),
        num(r.change_last_year),
    ]


def write_csv(report: Report, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.csv`` (tidy KPIs) and ``<stem>-daily.csv``; returns their paths."""
    path = out_dir / f"{stem}.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(ROW_COLUMNS)
        for r in report.rows:
            w.writerow(row_record(report.period.label, r))
    paths = [path]
    if report.daily:
        daily = out_dir / f"{stem}-daily.csv"
        with daily.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow([f"{c} ({u})" if u else c for c, u in DAILY_COLUMNS])
            for d in report.daily:
                cells = []
                for c, _ in DAILY_COLUMNS:
                    v = getattr(d, c)
                    cells.append(num(v) if isinstance(v, float) or v is None else str(v))
                w.writerow(cells)
        paths.append(daily)
    return paths


__all__ = ["ROW_COLUMNS", "num", "row_record", "write_csv"]
