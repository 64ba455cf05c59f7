"""How figures are written: for people (HTML, PDF) and for machines (CSV, XLSX).

People get a magnitude and precision chosen per figure (``4.24 GWh``, ``2,175 t CO₂e``,
``0.45 %``); the machine outputs get each unit's meaningful precision (``MACHINE_DECIMALS``)
next to the full float, and their text cells pass through :func:`cell_text`.
"""

from __future__ import annotations

import math

from greendc.exporters.report.compute import DELTA_KPIS, Row

NOT_AVAILABLE = "—"

# Units as people read them (the machine outputs keep the codes on the left).
DISPLAY_UNITS = {
    "tCO2e": "t CO₂e",
    "kgCO2e/kWh": "kg CO₂e/kWh",
    "ratio": "%",
    "": "",
}

# Decimals of the rounded value in the CSV and of the XLSX number format, per unit: about a
# tenth of what a meter of class 0.5-1 can resolve on a monthly figure (0.1 kWh, 1 L, 1 kg
# CO2e, 0.01 % of a ratio, 0.001 of a PUE). The full value is kept beside it.
MACHINE_DECIMALS = {
    "kWh": 1,
    "L": 0,
    "tCO2e": 3,
    "kgCO2e/kWh": 4,
    "L/kWh": 3,
    "ratio": 4,
    "": 3,
}


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _decimals(magnitude: float) -> int:
    # Three to four significant figures: 4.24 GWh, 840.6 MWh, 2,175 t.
    if magnitude >= 1000:
        return 0
    if magnitude >= 10:
        return 1
    return 2


def energy_scale(kwh_values: list[float | None]) -> tuple[float, str]:
    """The divisor and unit (kWh, MWh or GWh) for a column of kWh figures: the largest unit
    in which the smallest non-zero figure is still at least 1 (no "0.8 GWh" beside "4.2")."""
    sizes = [abs(v) for v in kwh_values if v is not None and not _missing(v) and v != 0]
    low = min(sizes, default=0.0)
    if low >= 1e6:
        return 1e6, "GWh"
    if low >= 1e3:
        return 1e3, "MWh"
    return 1.0, "kWh"


def fmt_number(value: float, decimals: int) -> str:
    """``1,234.5`` with a proper minus sign."""
    return f"{value:,.{decimals}f}".replace("-", "−")


def fmt_value(value: float | None, unit: str, *, with_unit: bool = True) -> str:
    """A figure with the magnitude and precision its unit deserves; an em dash when none.

    kWh become MWh or GWh, litres m³ above 10 m³, ratios percentages; ``with_unit=False``
    leaves the unit to a column header (and keeps the unit of the row: kWh stay kWh).
    """
    if _missing(value):
        return NOT_AVAILABLE
    assert value is not None
    v, shown = value, DISPLAY_UNITS.get(unit, unit)
    if unit == "ratio":
        pct = value * 100.0
        text = "0" if pct == 0 else fmt_number(pct, 1 if abs(pct) >= 1 else 2)
        return f"{text} %" if with_unit else text
    if unit == "kWh" and with_unit:
        div, shown = energy_scale([value])
        v = value / div
    elif unit == "L" and with_unit and abs(value) >= 10_000:
        v, shown = value / 1000.0, "m³"
    if v == 0:
        text = "0"
    elif unit in ("", "kgCO2e/kWh", "L/kWh"):
        text = fmt_number(v, 2)
    else:
        text = fmt_number(v, _decimals(abs(v)))
    return f"{text} {shown}" if with_unit and shown else text


def fmt_in(value: float | None, divisor: float, decimals: int = 1) -> str:
    """A figure divided by ``divisor`` (a column's common unit), or an em dash."""
    if _missing(value):
        return NOT_AVAILABLE
    assert value is not None
    return fmt_number(value / divisor, decimals)


def fmt_coverage(cov: float | None) -> str:
    """Coverage as a percentage, or an empty string."""
    return "" if cov is None else f"{cov * 100:.1f} %"


def row_text(r: Row) -> str:
    """The value of a row as shown to people, with the reason when there is no value."""
    if r.not_metered:
        return f"{NOT_AVAILABLE} (not metered)"
    if r.value is None:
        return f"{NOT_AVAILABLE} ({r.status})"
    text = fmt_value(r.value, r.unit)
    # An incomplete figure is shown, never passed off as a full one.
    return f"{text} (incomplete)" if r.status == "incomplete" else text


def fmt_change(r: Row, *, last_year: bool, period_name: str) -> str:
    """The comparison of a row with an earlier period, in words a reader can use.

    Energy and emissions change by a percentage; PUE and CUE by their own unit; shares by
    percentage points. ``no data for <period>`` where the earlier period has no figure.
    """
    if r.kpi not in DELTA_KPIS and r.kpi != "fleet_pue":
        return ""
    before = r.last_year if last_year else r.prev_month
    if before is None:
        return f"no data for {period_name}"
    if r.value is None:
        return f"n/a ({fmt_value(before, r.unit)} in {period_name})"
    if r.unit == "ratio":
        diff = f"{fmt_number((r.value - before) * 100.0, 1)} pp"
    elif r.unit in ("", "kgCO2e/kWh"):
        diff = fmt_number(r.value - before, 2)
    elif before == 0:
        diff = "new"
    else:
        diff = f"{fmt_number((r.value - before) / abs(before) * 100.0, 1)} %"
    if diff.lstrip("−").rstrip(" %p").replace("0", "").replace(".", "") == "":
        diff = "±" + diff.lstrip("−")  # rounds to no change: neither up nor down
    elif not diff.startswith(("−", "new")):
        diff = "+" + diff
    return f"{diff} (was {fmt_value(before, r.unit)})"


# A cell starting with one of these is read as a formula by Excel, LibreOffice or Google
# Sheets (OWASP "CSV injection"); tab and carriage return are stripped by some before reading.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def cell_text(text: str) -> str:
    """Every text cell of the CSV and XLSX passes here: the one place for cell escaping.

    Site names, contract references, notes and labels come from configuration an operator may
    not fully control; a leading ``'`` makes a spreadsheet show such text as text instead of
    running it as a formula (openpyxl would even store a leading ``=`` as one).
    """
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


__all__ = [
    "DISPLAY_UNITS",
    "FORMULA_TRIGGERS",
    "MACHINE_DECIMALS",
    "NOT_AVAILABLE",
    "cell_text",
    "energy_scale",
    "fmt_change",
    "fmt_coverage",
    "fmt_in",
    "fmt_number",
    "fmt_value",
    "row_text",
]
