"""How figures are written for people (HTML, PDF): one rule per unit, shared by both.

Machine formats (CSV, XLSX, JSON) carry the full float; these strings are what a reader
sees, and the golden test checks that the hand-computed figures appear in them.
"""

from __future__ import annotations

import math

from greendc.exporters.report.compute import Row

NOT_AVAILABLE = "—"


def fmt_value(value: float | None, unit: str, *, with_unit: bool = True) -> str:
    """A figure with the precision its unit deserves; an em dash when there is none.

    Ratios are shown as percentages; ``with_unit=False`` leaves the unit to a column header.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return NOT_AVAILABLE
    if unit == "ratio":
        return f"{value * 100:.1f} %" if with_unit else f"{value * 100:.1f}"
    digits = {"kWh": 1, "L": 1, "tCO2e": 3, "kgCO2e/kWh": 4, "L/kWh": 3, "": 3}.get(unit, 3)
    text = f"{value:,.{digits}f}"
    return f"{text} {unit}" if with_unit and unit else text


def fmt_change(change: float | None) -> str:
    """A relative change as a signed percentage, or an empty string."""
    if change is None:
        return ""
    return f"{change * 100:+.1f} %"


def fmt_coverage(cov: float | None) -> str:
    """Coverage as a percentage, or an empty string."""
    return "" if cov is None else f"{cov * 100:.1f} %"


def row_text(r: Row) -> str:
    """The value of a row as shown to people, with its status when there is no value."""
    if r.value is None:
        return f"{NOT_AVAILABLE} ({r.status})"
    return fmt_value(r.value, r.unit)


__all__ = ["NOT_AVAILABLE", "fmt_change", "fmt_coverage", "fmt_value", "row_text"]
