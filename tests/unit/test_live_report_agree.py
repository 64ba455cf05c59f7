"""The live figures and the monthly report agree on the same readings (one rule in the core).

Grid energy is clipped per interval (an interval of solar surplus does not cancel another
interval's grid energy) and each interval is charged at its hour's factor. The live KPIs,
the live emissions counter and the report all take both rules from greendc.kpi, so on the
same readings they agree to 1e-9; the test also shows the old live rule (clipping the
running totals, always the annual factor) would not.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from greendc.collector.site_figures import LiveSites
from greendc.config import Settings
from greendc.exporters.report.compute import kpis_for, site_energies
from greendc.factors import load_factors
from greendc.kpi import Window
from greendc.model import Reading
from tests.support.builders import settings_from, site_config

T0 = 1_764_374_400  # 2025-11-29T00:00:00Z, on the hour
HOURS = 3
END = T0 + HOURS * 3600
STATIC_SG = load_factors().zone("SG").grid_average.value


def _settings(tmp_path: Path) -> Settings:
    # Hour 0 and hour 2 have hourly factors; hour 1 falls back to the annual one.
    csv = tmp_path / "sg-hourly.csv"
    csv.write_text(f"ts,kg_per_kwh\n{T0},0.31\n{T0 + 7200},0.52\n", encoding="utf-8")
    meters = [
        {"name": "inc", "role": "facility"},
        {"name": "office", "role": "facility", "sign": -1},
        {"name": "ups", "role": "it", "point": "ups_output"},
        {"name": "pv", "role": "renewable_onsite"},
    ]
    data = {
        "kpi": {
            "interval_seconds": 60,
            "max_gap_seconds": 300,
            "min_coverage": 0.5,
            "windows_seconds": [3600, HOURS * 3600],
        },
        "validation": {"max_past_seconds": 10**9},
        "sites": [site_config("s1", grid_zone="SG", meters=meters, hourly_factors_file=str(csv))],
    }
    return settings_from(data)


def _readings() -> list[Reading]:
    """Every 10 s for three hours: a facility counter, power meters; PV above the facility
    load for a few minutes of each quarter hour (a surplus the grid figure must not net)."""
    out = []
    counter = 0.0
    prev_w = None
    for i in range(HOURS * 360 + 1):
        t = T0 + 10 * i
        fac_w = 2000.0 + 400.0 * math.sin(i / 37.0)
        if prev_w is not None:
            counter += (prev_w + fac_w) / 2 * 10 / 3600
        prev_w = fac_w
        pv_w = 2600.0 if (i // 6) % 15 < 3 else 300.0 + 100.0 * math.cos(i / 11.0)
        ms = t * 1000
        out += [
            Reading("s1", "inc", "facility", ms, {"energy_wh": counter, "power_w": fac_w}),
            Reading("s1", "office", "facility", ms, {"power_w": 150.0}),
            Reading("s1", "ups", "it", ms, {"power_w": 1200.0 + 50.0 * math.cos(i / 5.0)}),
            Reading("s1", "pv", "renewable_onsite", ms, {"power_w": pv_w}),
        ]
    return out


def _frame(readings: list[Reading]) -> pd.DataFrame:
    """The readings as the report's source hands them over (one row per sample)."""
    return pd.DataFrame(
        {
            "meter": [r.meter for r in readings],
            "ts_s": [r.ts_ms / 1000.0 for r in readings],
            "energy_wh": [r.fields.get("energy_wh", math.nan) for r in readings],
            "power_w": [r.fields.get("power_w", math.nan) for r in readings],
            "water_l": [math.nan] * len(readings),
        }
    )


def test_live_kpis_counter_and_report_agree_on_the_same_readings(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    site = settings.sites[0]
    readings = _readings()
    factors = load_factors()

    live = LiveSites(settings, factors)
    live.kpis.add_many(readings)
    figures = live.sites(END + 0.5)[0]
    snap = live.kpis.snapshot(END + 0.5)

    energies = site_energies(site, _frame(readings), Window(T0, END), max_gap_seconds=300)
    for start in (T0, END - 3600):  # the whole span and the last hour (the 1 h window)
        window = Window(start, END)
        report, note = kpis_for(site, energies, window, factors, settings.kpi.min_coverage)
        assert note is None
        live_k = snap.kpis["s1"][window.seconds]
        for name in ("E_DC", "E_IT", "E_grid", "E_renewable_onsite"):
            assert live_k.inputs[name].value == pytest.approx(
                report.inputs[name].value, rel=1e-9
            ), name
        for name in ("pue", "ref", "scope2_location", "scope2_market", "cue"):
            want = report.kpis[name]
            assert want.value is not None, name
            assert live_k.kpis[name].value == pytest.approx(want.value, rel=1e-9), name
            assert live_k.kpis[name].label == want.label, name
        assert "hourly" in report.kpis["scope2_location"].label

    # The counter since start (all readings are in the span) equals the report's Scope 2.
    whole, _ = kpis_for(site, energies, Window(T0, END), factors, settings.kpi.min_coverage)
    report_kg = whole.kpis["scope2_location"].value
    assert report_kg is not None
    assert figures.emissions_g / 1000.0 == pytest.approx(report_kg, rel=1e-9)
    # So is the grid energy counter (what the dashboards divide the emissions by).
    assert figures.grid_energy_wh == pytest.approx(whole.inputs["E_grid"].value, rel=1e-9)
    # The last completed interval is in hour 2: its hourly factor is the one shown.
    assert figures.grid_intensity_g_per_kwh == pytest.approx(520.0)

    # The old live rule, the running totals clipped once at the annual factor, is not it.
    grid_from_totals = max(
        0.0,
        whole.inputs["E_DC"].value - whole.inputs["E_renewable_onsite"].value,
    )
    assert whole.inputs["E_grid"].value > grid_from_totals * 1.01
    assert grid_from_totals * STATIC_SG / 1000.0 != pytest.approx(report_kg, rel=1e-3)


def test_emissions_counter_keeps_intervals_that_left_the_longest_window(tmp_path: Path) -> None:
    """Snapshots taken as the windows move on: the counter still counts every interval once."""
    data = _settings(tmp_path).model_dump(mode="json")
    data["kpi"]["windows_seconds"] = [600, 1200]  # much shorter than the three hours
    settings = settings_from(data)
    site = settings.sites[0]
    readings = _readings()
    factors = load_factors()
    live = LiveSites(settings, factors)
    counted = []
    by_minute: dict[int, list[Reading]] = {}
    for r in readings:
        by_minute.setdefault(r.ts_ms // 60_000, []).append(r)
    for minute in sorted(by_minute):
        live.kpis.add_many(by_minute[minute])
        counted.append(live.kpis.snapshot(minute * 60 + 30).emissions_kg["s1"])
    assert counted[30] > 0  # counted as the readings come, not only at the end
    energies = site_energies(site, _frame(readings), Window(T0, END), max_gap_seconds=300)
    whole, _ = kpis_for(site, energies, Window(T0, END), factors, settings.kpi.min_coverage)
    assert whole.kpis["scope2_location"].value is not None
    assert counted[-1] == pytest.approx(whole.kpis["scope2_location"].value, rel=1e-9)
