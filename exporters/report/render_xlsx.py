"""XLSX workbook (openpyxl): a Summary sheet (the tidy rows), a Daily sheet and Notes."""

from __future__ import annotations

from pathlib import Path

from openpyxl import Workbook
from openpyxl.styles import Font, PatternFill
from openpyxl.utils import get_column_letter

from greendc.exporters.report.compute import DAILY_COLUMNS, Report
from greendc.exporters.report.render_csv import ROW_COLUMNS

_HEAD = Font(bold=True, color="FFFFFF")
_FILL = PatternFill("solid", fgColor="2F855A")


def _header(ws: object, names: list[str]) -> None:
    ws.append(names)  # type: ignore[attr-defined]
    for cell in ws[1]:  # type: ignore[index]
        cell.font = _HEAD
        cell.fill = _FILL
    ws.freeze_panes = "A2"  # type: ignore[attr-defined]


def write_xlsx(report: Report, out_dir: Path, stem: str) -> Path:
    """Write ``<stem>.xlsx``; numbers are stored as numbers, withheld cells are empty."""
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Summary"
    _header(ws, list(ROW_COLUMNS))
    for r in report.rows:
        rec = {
            "period": report.period.label,
            "site": r.site,
            "kpi": r.kpi,
            "label": r.label,
            "value": r.value,
            "unit": r.unit,
            "coverage": r.coverage,
            "status": str(r.status),
            "measured_share": r.measured_share,
            "bridged_share": r.bridged_share,
            "missing_share": r.missing_share,
            "note": r.note,
            "prev_month": r.prev_month,
            "change_prev_month": r.change_prev_month,
            "last_year": r.last_year,
            "change_last_year": r.change_last_year,
        }
        ws.append([rec[c] for c in ROW_COLUMNS])
    for i, c in enumerate(ROW_COLUMNS, start=1):
        width = {"label": 40, "note": 60, "kpi": 20}.get(c, 14)
        ws.column_dimensions[get_column_letter(i)].width = width
        if c in ("coverage", "change_prev_month", "change_last_year"):
            for cell in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell[0].number_format = "0.0%"

    daily = wb.create_sheet("Daily")
    _header(daily, [f"{c} ({u})" if u else c for c, u in DAILY_COLUMNS])
    for d in report.daily:
        daily.append([getattr(d, c) for c, _ in DAILY_COLUMNS])
    for i in range(1, len(DAILY_COLUMNS) + 1):
        daily.column_dimensions[get_column_letter(i)].width = 16
    for cell in daily.iter_rows(min_row=2, min_col=2, max_col=2):
        cell[0].number_format = "yyyy-mm-dd"

    notes = wb.create_sheet("Notes")
    _header(notes, ["site", "note"])
    for n in report.notes:
        notes.append(["(all)", n])
    for s in report.sites:
        for n in s.notes:
            notes.append([s.site.name, n])
    notes.column_dimensions["B"].width = 120
    path = out_dir / f"{stem}.xlsx"
    wb.save(path)
    return path


__all__ = ["write_xlsx"]
