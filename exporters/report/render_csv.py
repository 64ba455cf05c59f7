"""Tidy CSV: one row per site (or ``fleet``) and KPI, and one per site, day and KPI.

Every row carries its unit. ``value`` is rounded to the unit's meaningful precision
(:data:`greendc.exporters.report.fmt.MACHINE_DECIMALS`); ``value_full`` is the float as
computed (``repr``), so a script loses nothing. An empty value means withheld or not
metered (see ``status``: ok, incomplete or withheld, or "from
contracts"; the shares say how much of the period was measured, bridged across gaps, or
missing). Files are UTF-8 with a byte-order mark, so a spreadsheet on
Windows reads "Σ" and "₂" right. The ``semicolon`` style writes ``;`` between fields and a
decimal comma, as spreadsheets in most of continental Europe expect.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from greendc.exporters.report.compute import DAILY_COLUMNS, FLEET, Report, Row
from greendc.exporters.report.fmt import MACHINE_DECIMALS, cell_text
from greendc.exporters.report.labels import site_names

ROW_COLUMNS = (
    "period",
    "scope",
    "site",
    "site_name",
    "kpi",
    "label",
    "value",
    "unit",
    "value_full",
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
DAILY_CSV_COLUMNS = (
    "period",
    "scope",
    "site",
    "site_name",
    "day",
    "kpi",
    "value",
    "unit",
    "value_full",
)
# The daily figures under the same KPI codes as the summary, each with its unit.
DAILY_KPIS: dict[str, str] = {
    "e_dc_kwh": "E_DC",
    "e_it_kwh": "E_IT",
    "cooling_kwh": "E_cooling",
    "lighting_kwh": "E_lighting",
    "other_overhead_kwh": "E_other_overhead",
    "renewable_onsite_kwh": "E_renewable_onsite",
    "certificates_kwh": "E_certificates",
    "pue": "pue",
    "ref": "ref",
    "scope2_location_t": "scope2_location",
    "scope2_market_t": "scope2_market",
    "coverage_dc": "coverage_E_DC",
    "coverage_it": "coverage_E_IT",
}
# Changes and coverage are ratios: four decimals (0.01 %).
RATIO_DECIMALS = 4


@dataclass(frozen=True)
class CsvStyle:
    """Field separator and decimal mark of the CSV files, and the files' name suffix."""

    delimiter: str = ","
    decimal: str = "."
    suffix: str = ""


COMMA = CsvStyle()
SEMICOLON = CsvStyle(";", ",", "-semicolon")


def num(value: float | None) -> str:
    """A float in full precision, or an empty cell."""
    return "" if value is None else repr(float(value))


def rounded(value: float | None, unit: str) -> str:
    """A float at its unit's meaningful precision (no thousands separator), or empty."""
    if value is None:
        return ""
    d = MACHINE_DECIMALS.get(unit, 3)
    return f"{round(float(value), d) + 0.0:.{d}f}"  # + 0.0: no "-0.0"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{round(float(value), RATIO_DECIMALS):.{RATIO_DECIMALS}f}"


def row_record(period: str, r: Row, site_name: str = "") -> list[str]:
    """One tidy row as CSV cells (dot decimals), in the order of ``ROW_COLUMNS``."""
    return [
        period,
        FLEET if r.site == FLEET else "site",
        r.site,
        cell_text(site_name),
        r.kpi,
        cell_text(r.label),
        rounded(r.value, r.unit),
        r.unit,
        num(r.value),
        _ratio(r.coverage),
        str(r.status),
        _ratio(r.measured_share),
        _ratio(r.bridged_share),
        _ratio(r.missing_share),
        cell_text(r.note),
        rounded(r.prev_month, r.unit),
        _ratio(r.change_prev_month),
        rounded(r.last_year, r.unit),
        _ratio(r.change_last_year),
    ]


def _numeric(columns: tuple[str, ...]) -> set[int]:
    names = {"value", "value_full", "coverage", "prev_month", "change_prev_month"}
    names |= {"last_year", "change_last_year"}
    return {i for i, c in enumerate(columns) if c in names}


def _styled(cells: list[str], numeric: set[int], style: CsvStyle) -> list[str]:
    if style.decimal == ".":
        return cells
    return [c.replace(".", style.decimal) if i in numeric else c for i, c in enumerate(cells)]


def write_csv(report: Report, out_dir: Path, stem: str, style: CsvStyle = COMMA) -> list[Path]:
    """Write ``<stem>.csv`` (tidy KPIs) and ``<stem>-daily.csv``; returns their paths."""
    names = site_names(report)
    period = report.period.label
    path = out_dir / f"{stem}{style.suffix}.csv"
    numeric = _numeric(ROW_COLUMNS)
    with path.open("w", newline="", encoding="utf-8-sig") as f:
        w = csv.writer(f, delimiter=style.delimiter)
        w.writerow(ROW_COLUMNS)
        for r in report.rows:
            w.writerow(_styled(row_record(period, r, names.get(r.site, r.site)), numeric, style))
    paths = [path]
    if report.daily:
        units = dict(DAILY_COLUMNS)
        numeric = _numeric(DAILY_CSV_COLUMNS)
        daily = out_dir / f"{stem}-daily{style.suffix}.csv"
        with daily.open("w", newline="", encoding="utf-8-sig") as f:
            w = csv.writer(f, delimiter=style.delimiter)
            w.writerow(DAILY_CSV_COLUMNS)
            for d in report.daily:
                scope = FLEET if d.site == FLEET else "site"
                name = cell_text(names.get(d.site, d.site))
                for attr, kpi in DAILY_KPIS.items():
                    v = getattr(d, attr)
                    unit = units[attr]
                    cells = [period, scope, d.site, name, d.day.isoformat(), kpi]
                    cells += [rounded(v, unit), unit, num(v)]
                    w.writerow(_styled(cells, numeric, style))
        paths.append(daily)
    return paths


__all__ = [
    "COMMA",
    "DAILY_CSV_COLUMNS",
    "DAILY_KPIS",
    "ROW_COLUMNS",
    "SEMICOLON",
    "CsvStyle",
    "num",
    "rounded",
    "row_record",
    "write_csv",
]
