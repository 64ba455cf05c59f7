"""EU EED annual export: the Annex II fields of Delegated Regulation (EU) 2024/1364.

greendc fills the energy and KPI fields it measures (installed IT power from the
configuration, E_DC and its backup-generator part, E_IT, water input, reused heat,
renewable energy by GO, PPA and on-site, and PUE, WUE, ERF, REF over the calendar year in
the site's time zone). Every other Annex II field is listed with status ``not measured`` so
the person filing sees what they must add from other records. A measured field carries the
quality word of the report and of /metrics: ``ok``, ``incomplete`` (its inputs cover less
than the minimum coverage of the year: the value is what was accounted for, shown with its
coverage, never estimated) or ``withheld`` (nothing to compute), with its measured, bridged
(counter differences across gaps) and missing shares of the year.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from greendc.exporters.report.compute import FLEET, Report, Row
from greendc.exporters.report.fmt import cell_text
from greendc.exporters.report.render_csv import num

REGULATION = "Commission Delegated Regulation (EU) 2024/1364, Annex II"

# (field, label, unit, source row kpi or None, scale from the row's unit)
MEASURED: tuple[tuple[str, str, str, str, float], ...] = (
    ("total_energy_consumption", "total energy consumption E_DC", "kWh", "E_DC", 1.0),
    (
        "backup_generator_energy",
        "of which from back-up generators",
        "kWh",
        "E_generator",
        1.0,
    ),
    ("it_energy_consumption", "energy consumption of the IT equipment E_IT", "kWh", "E_IT", 1.0),
    ("total_water_input", "total water input", "m3", "water_l", 1e-3),
    ("waste_heat_reused", "waste heat reused E_REUSE", "kWh", "E_heat_reuse", 1.0),
    (
        "renewable_energy_go",
        "renewable energy from guarantees of origin E_RES-GOO (GO/REC contracts)",
        "kWh",
        "E_renewable_go_rec",
        1.0,
    ),
    ("renewable_energy_ppa", "renewable energy from PPAs E_RES-PPA", "kWh", "E_renewable_ppa", 1.0),
    (
        "renewable_energy_onsite",
        "renewable energy produced on site E_RES-OS",
        "kWh",
        "E_renewable_onsite",
        1.0,
    ),
    ("renewable_energy_total", "total renewable energy E_RES-TOT", "kWh", "E_renewable", 1.0),
    ("pue", "power usage effectiveness PUE", "", "pue", 1.0),
    ("wue", "water usage effectiveness WUE", "L/kWh", "wue", 1.0),
    ("erf", "energy reuse factor ERF", "ratio", "erf", 1.0),
    ("ref", "renewable energy factor REF", "ratio", "ref", 1.0),
)

NOT_MEASURED: tuple[tuple[str, str, str], ...] = (
    ("total_floor_area", "total floor area", "m2"),
    ("computer_room_floor_area", "computer room floor area", "m2"),
    ("data_traffic_incoming", "incoming data traffic", "exabytes"),
    ("data_traffic_outgoing", "outgoing data traffic", "exabytes"),
    ("data_stored", "data stored", "petabytes"),
    ("ict_capacity_servers", "ICT capacity for servers", ""),
    ("ict_capacity_storage", "ICT capacity for storage equipment", "petabytes"),
    ("potable_water_input", "potable water input", "m3"),
    ("waste_heat_average_temperature", "average waste heat temperature", "C"),
    ("it_intake_setpoint_temperature", "IT equipment intake air setpoint temperature", "C"),
    ("refrigerants", "type and quantity of refrigerants", ""),
    ("cooling_degree_days", "cooling degree days", ""),
)


def _field(field: str, label: str, unit: str, row: Row | None, scale: float) -> dict[str, Any]:
    if row is None:
        return {
            "field": field,
            "label": label,
            "value": None,
            "unit": unit,
            "status": "not measured",
            "note": "",
        }
    value = None if row.value is None else row.value * scale
    return {
        "field": field,
        "label": label,
        "value": value,
        "unit": unit,
        "status": str(row.status),
        "coverage": row.coverage,
        "measured_share": row.measured_share,
        "bridged_share": row.bridged_share,
        "missing_share": row.missing_share,
        "note": row.note,
    }


def eed_fields(report: Report) -> list[dict[str, Any]]:
    """One record per site (and the fleet) with every Annex II field."""
    out = []
    scopes: list[tuple[str, list[Row], float | None]] = [
        (s.site.name, s.rows, s.site.installed_it_kw) for s in report.sites
    ]
    if len(report.sites) > 1:
        total_kw = sum(s.site.installed_it_kw for s in report.sites)
        fleet = list(report.fleet_rows)
        fleet += [
            Row(FLEET, "pue", r.label, r.value, r.unit, r.coverage, r.status, r.note)
            for r in report.fleet_rows
            if r.kpi == "fleet_pue"
        ]
        scopes.append((FLEET, fleet, total_kw))
    for name, rows, kw in scopes:
        by = {r.kpi: r for r in rows}
        fields = [
            {
                "field": "installed_it_power",
                "label": "installed information technology power demand",
                "value": kw,
                "unit": "kW",
                "status": "from configuration",
                "note": "sites[].installed_it_kw",
            }
        ]
        fields += [_field(f, lab, u, by.get(k), sc) for f, lab, u, k, sc in MEASURED]
        fields += [_field(f, lab, u, None, 1.0) for f, lab, u in NOT_MEASURED]
        out.append({"site": name, "fields": fields})
    return out


def write_eed(report: Report, out_dir: Path, stem: str) -> list[Path]:
    """Write ``<stem>.json`` and ``<stem>.csv``; returns their paths."""
    records = eed_fields(report)
    doc = {
        "regulation": REGULATION,
        "year": report.period.year,
        "generated_utc": report.generated_utc.isoformat(),
        "source": report.source,
        "note": (
            "Calendar year in each site's time zone. PUE of the fleet is ΣE_DC/ΣE_IT, not an"
            " EDC-weighted average of site PUEs. Status of a measured field: ok, incomplete"
            " (under the minimum coverage, shown with its coverage) or withheld; bridged"
            " energy is a counter difference across a gap. Fields with status 'not measured'"
            " are not measured by greendc and must be filled from other records."
        ),
        "sites": records,
    }
    jpath = out_dir / f"{stem}.json"
    jpath.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    cpath = out_dir / f"{stem}.csv"
    with cpath.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "year",
                "site",
                "field",
                "label",
                "value",
                "unit",
                "status",
                "coverage",
                "measured_share",
                "bridged_share",
                "missing_share",
                "note",
            ]
        )
        for rec in records:
            for fl in rec["fields"]:
                w.writerow(
                    [
                        report.period.year,
                        cell_text(rec["site"]),
                        cell_text(fl["field"]),
                        cell_text(fl["label"]),
                        num(fl["value"]),
                        cell_text(fl["unit"]),
                        cell_text(fl["status"]),
                        num(fl.get("coverage")),
                        num(fl.get("measured_share")),
                        num(fl.get("bridged_share")),
                        num(fl.get("missing_share")),
                        cell_text(fl["note"]),
                    ]
                )
    return [jpath, cpath]


__all__ = ["MEASURED", "NOT_MEASURED", "REGULATION", "eed_fields", "write_eed"]
