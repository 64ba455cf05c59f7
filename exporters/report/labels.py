"""Words for people: plain-language KPI names with their formula, site names, periods.

The machine outputs keep the KPI codes (``E_DC``, ``pue``) and the labels :mod:`compute`
gives each row; what a reader sees first is the plain name here, the formula one footnote
(PDF) or one hover/click (HTML) away.
"""

from __future__ import annotations

from dataclasses import dataclass

from greendc.config import Site
from greendc.exporters.report.compute import FLEET, Report, Row
from greendc.exporters.report.periods import Period

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@dataclass(frozen=True)
class Label:
    """A KPI's plain name and the formula or definition behind it."""

    name: str
    formula: str


_LABELS: dict[str, Label] = {
    "E_DC": Label("Total energy", "E_DC: all energy the data centre used"),
    "E_IT": Label("IT energy", "E_IT: energy delivered to the IT equipment"),
    "E_grid": Label("Grid energy", "energy imported from the grid"),
    "E_generator": Label("Backup generator energy", "energy from on-site generators"),
    "E_renewable_onsite": Label("Renewable energy, on-site", "on-site generation consumed"),
    "E_renewable_go_rec": Label(
        "Renewable energy, certificates", "guarantees of origin / RECs retired (GO/REC)"
    ),
    "E_renewable_ppa": Label("Renewable energy, PPA", "power purchase agreements"),
    "E_renewable": Label("Renewable energy, total", "on-site + certificates + PPA"),
    "pue": Label("Power usage effectiveness", "PUE = E_DC / E_IT (ISO/IEC 30134-2)"),
    "fleet_pue": Label(
        "Power usage effectiveness", "fleet PUE = ΣE_DC / ΣE_IT (not an average of site PUEs)"
    ),
    "ref": Label("Renewable share", "REF = renewable energy counted / E_DC (ISO/IEC 30134-3)"),
    "scope2_location": Label(
        "Emissions, location-based", "Scope 2 (GHG Protocol): grid kWh × grid-average factor"
    ),
    "scope2_market": Label(
        "Emissions, market-based",
        "Scope 2 (GHG Protocol): certificates and PPAs first, residual mix for the rest",
    ),
    "cue": Label(
        "Carbon usage effectiveness", "CUE = location-based CO₂e / E_IT (ISO/IEC 30134-8)"
    ),
    "cfe": Label(
        "Carbon-free energy, hourly", "24/7 CFE: clean energy matched hour by hour / E_DC"
    ),
    "E_heat_reuse": Label("Heat reused", "heat exported outside the data centre"),
    "erf": Label("Energy reuse factor", "ERF = heat reused / E_DC (ISO/IEC 30134-6)"),
    "water_l": Label("Water input", "water drawn by the site"),
    "wue": Label("Water usage effectiveness", "WUE = water (L) / E_IT (kWh)"),
}


def kpi_label(r: Row) -> Label:
    """The plain name of a row and its formula (the computed label is kept in the formula)."""
    if r.kpi.startswith("ppue:"):
        zone = r.kpi.split(":", 1)[1]
        return Label(f"Partial PUE, {zone}", f"{r.label} = (zone IT + zone overhead) / zone IT")
    base = _LABELS.get(r.kpi)
    if base is None:
        return Label(r.label, r.label)
    if r.kpi in ("pue", "fleet_pue", "cue", "scope2_location"):
        # The computed label carries the category, "interim" or "hourly": keep it visible.
        return Label(base.name, f"{r.label}: {base.formula}")
    return base


def site_name(site: Site) -> str:
    """The name people use for a site (its display name, else its code)."""
    return site.display_name or site.name


def site_names(report: Report) -> dict[str, str]:
    """Site code -> display name, with the fleet."""
    out = {s.site.name: site_name(s.site) for s in report.sites}
    out[FLEET] = f"Fleet ({len(report.sites)} sites)"
    return out


def period_name(period: Period) -> str:
    """``November 2026`` for a month, ``2026`` for a year."""
    if period.month is None:
        return f"{period.year:04d}"
    return f"{MONTHS[period.month - 1]} {period.year:04d}"


__all__ = ["MONTHS", "Label", "kpi_label", "period_name", "site_name", "site_names"]
