"""XLSX workbook (openpyxl): Summary (sites), Fleet, Daily (sites), Fleet daily, Notes.

Fleet totals live on their own sheets, so a pivot or a SUM over the Summary sheet cannot
count anything twice. Every sheet is an Excel table (with its AutoFilter), values are
numbers with a number format per unit (the full float is stored; the format only rounds
what is shown), columns are as wide as their content, and each sheet prints landscape,
one page wide, with the header row repeated. Text cells pass through
:func:`greendc.exporters.report.fmt.cell_text`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.table import Table, TableStyleInfo
from openpyxl.worksheet.worksheet import Worksheet

from greendc.exporters.report.compute import DAILY_COLUMNS, FLEET, Report, Row
from greendc.exporters.report.fmt import cell_text
from greendc.exporters.report.labels import kpi_label, period_name, site_names

# Number formats per unit (Excel codes): shown precision only, the cell keeps the float.
NUMBER_FORMATS = {
    "kWh": "#,##0.0",
    "L": "#,##0",
    "tCO2e": "#,##0.000",
    "kgCO2e/kWh": "0.0000",
    "L/kWh": "0.000",
    "ratio": "0.00%",
    "": "0.000",
}
# Units as the Unit column shows them: a ratio is formatted as a percentage; PUE is kWh/kWh.
UNIT_WORDS = {"ratio": "%", "": "kWh/kWh", "tCO2e": "t CO2e", "kgCO2e/kWh": "kg CO2e/kWh"}
SUMMARY_HEADERS = (
    "Site",
    "Site code",
    "Figure",
    "KPI code",
    "Value",
    "Unit",
    "Coverage",
    "Status",
    "Measured share",
    "Bridged share",
    "Missing share",
    "Previous month",
    "Change (previous month)",
    "Same month last year",
    "Change (last year)",
    "Formula",
    "Note",
)
# Daily sheet: (DailyRow attribute, header).
DAILY_HEADERS = (
    ("site_name", "Site"),
    ("site", "Site code"),
    ("day", "Day"),
    ("e_dc_kwh", "Total energy (kWh)"),
    ("e_it_kwh", "IT energy (kWh)"),
    ("cooling_kwh", "Cooling (kWh)"),
    ("lighting_kwh", "Lighting (kWh)"),
    ("other_overhead_kwh", "Other overhead (kWh)"),
    ("renewable_onsite_kwh", "Renewable on-site (kWh)"),
    ("certificates_kwh", "Certificates and PPA (kWh)"),
    ("pue", "PUE"),
    ("ref", "Renewable share"),
    ("scope2_location_t", "Scope 2 location-based (t CO2e)"),
    ("scope2_market_t", "Scope 2 market-based (t CO2e)"),
    ("coverage_dc", "Coverage of total energy"),
    ("coverage_it", "Coverage of IT energy"),
)
_WRAP = Alignment(wrap_text=True, vertical="top")
_TOP = Alignment(vertical="top")
_TOP_INDENT = Alignment(vertical="top", horizontal="left", indent=1)
# Spelled out as well as the table style: LibreOffice does not draw Excel table styles.
_HEAD_FONT = Font(bold=True, color="FFFFFF")
_HEAD_FILL = PatternFill("solid", fgColor="2F855A")
_MAX_WIDTH = {"Note": 44, "Formula": 36, "Figure": 32}
_HEAD_WIDTH = 16  # long headers wrap onto two lines rather than widen their column


def _text(value: str) -> str:
    # The one door for text into the workbook.
    return cell_text(value)


def _summary_record(r: Row, name: str) -> list[Any]:
    return [
        _text(name),
        _text(r.site),
        _text(kpi_label(r).name),
        _text(r.kpi),
        r.value,
        _text(UNIT_WORDS.get(r.unit, r.unit)),
        r.coverage,
        _text(str(r.status)),
        r.measured_share,
        r.bridged_share,
        r.missing_share,
        r.prev_month,
        r.change_prev_month,
        r.last_year,
        r.change_last_year,
        _text(kpi_label(r).formula),
        _text(r.note),
    ]


def _fill_summary(ws: Worksheet, rows: Sequence[Row], names: dict[str, str]) -> None:
    ws.append(list(SUMMARY_HEADERS))
    for r in rows:
        ws.append(_summary_record(r, names.get(r.site, r.site)))
        line = ws.max_row
        fmt = NUMBER_FORMATS.get(r.unit, "0.000")
        for col in ("Value", "Previous month", "Same month last year"):
            ws.cell(line, SUMMARY_HEADERS.index(col) + 1).number_format = fmt
        for col in (
            "Coverage",
            "Measured share",
            "Bridged share",
            "Missing share",
            "Change (previous month)",
            "Change (last year)",
        ):
            ws.cell(line, SUMMARY_HEADERS.index(col) + 1).number_format = "0.0%"


def _fill_daily(ws: Worksheet, report: Report, names: dict[str, str], fleet: bool) -> None:
    units = dict(DAILY_COLUMNS)
    ws.append([h for _, h in DAILY_HEADERS])
    for d in report.daily:
        if (d.site == FLEET) != fleet:
            continue
        text = {"site_name": _text(names.get(d.site, d.site)), "site": _text(d.site)}
        ws.append([text[a] if a in text else getattr(d, a) for a, _ in DAILY_HEADERS])
        line = ws.max_row
        for i, (attr, _) in enumerate(DAILY_HEADERS, start=1):
            if attr == "day":
                ws.cell(line, i).number_format = "yyyy-mm-dd"
            elif attr not in text:
                ws.cell(line, i).number_format = NUMBER_FORMATS.get(units[attr], "0.000")


def _finish(
    ws: Worksheet,
    name: str,
    title: str,
    wrap: Sequence[str] = (),
    widest: dict[str, int] | None = None,
) -> None:
    """Table with AutoFilter, widths that fit (up to ``widest``), frozen header, print setup."""
    caps = {**_MAX_WIDTH, **(widest or {})}
    cols, rows = ws.max_column, ws.max_row
    ref = f"A1:{get_column_letter(cols)}{max(rows, 2)}"
    if rows == 1:
        ws.append([None] * cols)  # a table needs a data row
    table = Table(displayName=name, ref=ref)
    table.tableStyleInfo = TableStyleInfo(name="TableStyleMedium7", showRowStripes=True)
    ws.add_table(table)
    headers = [str(c.value) for c in ws[1]]
    for i, head in enumerate(headers, start=1):
        longest = min(len(head), _HEAD_WIDTH) + 3  # room for the filter button
        for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
            if cell.value is None:
                continue
            if isinstance(cell.value, str):
                longest = max(longest, len(cell.value))
            else:
                longest = max(longest, 14)
        width = min(longest + 2, caps.get(head, 40))
        ws.column_dimensions[get_column_letter(i)].width = width
        if head in wrap:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.alignment = _WRAP
                # Spreadsheets do not grow a row for wrapped text written by a library.
                lines = -(-len(str(cell.value or "")) // max(1, int(width) - 1))
                old = ws.row_dimensions[cell.row].height or 15.0
                ws.row_dimensions[cell.row].height = max(old, 15.0 * max(1, lines))
    for cell in ws[1]:
        cell.alignment = _WRAP
        cell.font = _HEAD_FONT
        cell.fill = _HEAD_FILL
    # Top-aligned, so a row made tall by a wrapped note still reads as one line of figures.
    indented = {headers.index(h) for h in ("Unit", "Status") if h in headers}
    for row in ws.iter_rows(min_row=2):
        for i, cell in enumerate(row):
            if headers[i] in wrap:
                continue
            cell.alignment = _TOP_INDENT if i in indented else _TOP
    ws.row_dimensions[1].height = 30.0
    ws.freeze_panes = "B2" if cols > 1 else "A2"
    ws.print_title_rows = "1:1"
    ws.page_setup.orientation = "landscape"
    ws.page_setup.paperSize = ws.PAPERSIZE_A4
    ws.page_setup.fitToWidth = 1
    ws.page_setup.fitToHeight = 0
    ws.sheet_properties.pageSetUpPr.fitToPage = True
    ws.print_options.gridLines = False
    ws.oddHeader.center.text = _text(title)
    ws.oddFooter.right.text = "page &P of &N"
    ws.page_margins.left = ws.page_margins.right = 0.4


def write_xlsx(report: Report, out_dir: Path, stem: str) -> Path:
    """Write ``<stem>.xlsx``; numbers are stored as numbers, withheld cells are empty."""
    names = site_names(report)
    month = period_name(report.period)
    title = f"Energy and carbon report, {month}"
    wb = Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "Summary"
    _fill_summary(ws, [r for s in report.sites for r in s.rows], names)
    _finish(ws, "Summary", f"{title}: sites", wrap=("Note", "Formula"))

    fleet = wb.create_sheet("Fleet")
    _fill_summary(fleet, report.fleet_rows, names)
    _finish(fleet, "Fleet", f"{title}: fleet totals", wrap=("Note", "Formula"))

    daily = wb.create_sheet("Daily")
    _fill_daily(daily, report, names, fleet=False)
    _finish(daily, "Daily", f"{title}: sites by day")

    fleet_daily = wb.create_sheet("Fleet daily")
    _fill_daily(fleet_daily, report, names, fleet=True)
    _finish(fleet_daily, "FleetDaily", f"{title}: fleet by day")

    notes = wb.create_sheet("Notes")
    notes.append(["Site", "Site code", "Note"])
    for n in report.notes:
        notes.append(["All sites", "", _text(n)])
    for s in report.sites:
        for n in s.notes:
            notes.append([_text(names[s.site.name]), _text(s.site.name), _text(n)])
    _finish(notes, "Notes", f"{title}: notes", wrap=("Note",), widest={"Note": 110})
    wb.properties.title = title
    wb.properties.creator = "greendc"
    path = out_dir / f"{stem}.xlsx"
    wb.save(path)
    return path


__all__ = ["DAILY_HEADERS", "NUMBER_FORMATS", "SUMMARY_HEADERS", "write_xlsx"]
