"""The monthly carbon report: a golden month in every format, periods across DST, bad inputs.

The golden month is March 2026 for two sites with constant loads, so every total can be
computed by hand (the expressions below are that hand computation):

* ber1 (Europe/Berlin; March has 743 h because clocks go forward on 29 March):
  facility 150 kW, IT 100 kW at UPS output (PUE1), cooling 40 kW, on-site solar 10 kW,
  water 120 L/h, a 20 000 kWh GO for March. February: facility 160 kW, IT 100 kW.
* sgx (Asia/Singapore, 744 h): facility 260 kW, IT 200 kW at PDU output (PUE2).

Factors (a test file): zone DE-T grid average 0.4, residual mix 0.5, carbon-free share 0.5;
zone SG-T grid average 0.4, no residual mix, no carbon-free share.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from openpyxl import load_workbook

from greendc.app.cli import main
from greendc.app.exits import ExitCode
from greendc.config import Settings, load_config
from greendc.exporters.report import Period, build_report
from greendc.exporters.report.charts import chart_scopes
from greendc.exporters.report.compute import Report
from greendc.exporters.report.eed import NOT_MEASURED
from greendc.exporters.report.render_pdf import page_count, write_pdf
from greendc.exporters.report.source import EmbeddedSource, water_meters_of
from greendc.factors import load_factors
from greendc.model import Reading
from greendc.store import EmbeddedStore

STEP_S = 900  # 15-minute counters keep the store small; max_gap_seconds is 900 too
BER_H = 743  # 31 days minus the hour lost on 29 March
SGX_H = 744
FEB_H = 28 * 24

FACTORS = {
    "version": 1,
    "zones": {
        "DE-T": {
            "name": "Test DE",
            "grid_average": {
                "value": 0.4,
                "unit": "kgCO2e/kWh",
                "year": 2024,
                "basis": "direct",
                "boundary": "production",
                "source": "test grid average",
            },
            "residual_mix": {
                "value": 0.5,
                "unit": "kgCO2e/kWh",
                "year": 2024,
                "basis": "direct",
                "boundary": "production",
                "source": "test residual mix",
            },
            "carbon_free_share": {"value": 0.5, "year": 2024, "source": "test share"},
        },
        "SG-T": {
            "name": "Test SG",
            "grid_average": {
                "value": 0.4,
                "unit": "kgCO2e/kWh",
                "year": 2024,
                "basis": "direct",
                "boundary": "production",
                "source": "test SG average",
            },
        },
    },
}

BER1: dict[str, Any] = {
    "name": "ber1",
    "display_name": "Berlin test",
    "timezone": "Europe/Berlin",
    "grid_zone": "DE-T",
    "installed_it_kw": 150,
    "pue_category": 1,
    "targets": {"pue": 1.45, "pue_warning": 1.6, "pue_critical": 1.8, "renewable_share": 0.2},
    "meters": [
        {"name": "incomer", "role": "facility"},
        {"name": "ups", "role": "it", "point": "ups_output"},
        {"name": "chiller", "role": "cooling"},
        {"name": "solar", "role": "renewable_onsite"},
        {"name": "water-main", "role": "water"},
    ],
    "contracts": [{"month": "2026-03", "kind": "go", "energy_kwh": 20000, "reference": "GO-1"}],
}
SGX: dict[str, Any] = {
    "name": "sgx",
    "timezone": "Asia/Singapore",
    "grid_zone": "SG-T",
    "installed_it_kw": 300,
    "pue_category": 2,
    "meters": [
        {"name": "incomer", "role": "facility"},
        {"name": "pdu", "role": "it", "point": "pdu_output"},
    ],
}


def _ts(year: int, month: int, day: int, tz: str) -> int:
    from zoneinfo import ZoneInfo

    return int(datetime(year, month, day, tzinfo=ZoneInfo(tz)).timestamp())


def counter_readings(
    site: str, meter: str, role: str, field: str, start_s: int, end_s: int, rate_per_h: Any
) -> Iterator[Reading]:
    """Counter samples every STEP_S from start to end; ``rate_per_h(t)`` per hour (Wh or L)."""
    value = 0.0
    t = start_s
    while t <= end_s:
        yield Reading(site, meter, role, t * 1000, {field: value})
        value += rate_per_h(t) * STEP_S / 3600.0
        t += STEP_S


def golden_readings() -> list[Reading]:
    """February and March 2026 (with 15 min either side) for ber1 and sgx."""
    out: list[Reading] = []
    b_mar = _ts(2026, 3, 1, "Europe/Berlin")
    b_lo, b_hi = _ts(2026, 2, 1, "Europe/Berlin") - 900, _ts(2026, 4, 1, "Europe/Berlin") + 900

    def ber(feb_kw: float, mar_kw: float) -> Any:
        return lambda t: (feb_kw if t < b_mar else mar_kw) * 1000.0

    for meter, role, field, rate in (
        ("incomer", "facility", "energy_wh", ber(160, 150)),
        ("ups", "it", "energy_wh", ber(100, 100)),
        ("chiller", "cooling", "energy_wh", ber(40, 40)),
        ("solar", "renewable_onsite", "energy_wh", ber(10, 10)),
        ("water-main", "water", "water_l", lambda t: 120.0),
    ):
        out += counter_readings("ber1", meter, role, field, b_lo, b_hi, rate)
    s_lo, s_hi = _ts(2026, 3, 1, "Asia/Singapore") - 900, _ts(2026, 4, 1, "Asia/Singapore") + 900
    out += counter_readings("sgx", "incomer", "facility", "energy_wh", s_lo, s_hi, lambda t: 260e3)
    out += counter_readings("sgx", "pdu", "it", "energy_wh", s_lo, s_hi, lambda t: 200e3)
    return out


# The hand computation.
E_DC_BER = 150 * BER_H
E_IT_BER = 100 * BER_H
SOLAR_BER = 10 * BER_H
GRID_BER = E_DC_BER - SOLAR_BER
E_DC_SGX = 260 * SGX_H
E_IT_SGX = 200 * SGX_H
EXPECTED: dict[tuple[str, str], float] = {
    ("ber1", "E_DC"): E_DC_BER,  # 111 450 kWh
    ("ber1", "E_IT"): E_IT_BER,  # 74 300 kWh
    ("ber1", "E_grid"): GRID_BER,
    ("ber1", "E_renewable_onsite"): SOLAR_BER,
    ("ber1", "E_renewable_go_rec"): 20000,
    ("ber1", "E_renewable_ppa"): 0,
    ("ber1", "E_renewable"): SOLAR_BER + 20000,
    ("ber1", "pue"): 1.5,
    ("ber1", "ref"): (SOLAR_BER + 20000) / E_DC_BER,
    ("ber1", "scope2_location"): GRID_BER * 0.4 / 1000,  # 41.608 t
    ("ber1", "scope2_market"): (GRID_BER - 20000) * 0.5 / 1000,  # 42.010 t
    ("ber1", "cue"): GRID_BER * 0.4 / E_IT_BER,  # 0.56 kg/kWh
    ("ber1", "cfe"): (10 + 140 * 0.5) / 150,
    ("ber1", "water_l"): 120 * BER_H,
    ("ber1", "wue"): 120 * BER_H / E_IT_BER,  # 1.2 L/kWh
    ("sgx", "E_DC"): E_DC_SGX,
    ("sgx", "E_IT"): E_IT_SGX,
    ("sgx", "pue"): 1.3,
    ("sgx", "scope2_location"): E_DC_SGX * 0.4 / 1000,
    ("sgx", "scope2_market"): E_DC_SGX * 0.4 / 1000,  # no residual mix: grid average
    ("fleet", "E_DC"): E_DC_BER + E_DC_SGX,
    ("fleet", "E_IT"): E_IT_BER + E_IT_SGX,
    ("fleet", "fleet_pue"): (E_DC_BER + E_DC_SGX) / (E_IT_BER + E_IT_SGX),
    ("fleet", "scope2_location"): (GRID_BER + E_DC_SGX) * 0.4 / 1000,
}
# What a reader sees in the HTML for some of them (magnitudes and precision for people).
EXPECTED_TEXT = (
    "74.3 MWh",  # ber1 E_IT 74 300 kWh
    "1.50",
    "1.30",
    "41.6 t CO₂e",
    "42.0 t CO₂e",
    "0.56 kg CO₂e/kWh",
    "53.3 %",
    "1.20 L/kWh",
    "PUE1 (interim)",
    "PUE2 (interim)",
    "1.37",  # fleet PUE 304 890 / 223 100
    "test grid average (2024; direct, production; kgCO2e/kWh)",
    "March 2026",
    "Berlin test",
    "no data for March 2025",
)


def write_config(tmp: Path, sites: list[dict[str, Any]], **extra: Any) -> Path:
    """A config file with an embedded store and the test factor file under ``tmp``."""
    (tmp / "factors.yaml").write_text(yaml.safe_dump(FACTORS))
    data: dict[str, Any] = {
        "sinks": {"embedded": {"path": str(tmp / "store.sqlite")}},
        "emission_factors_file": str(tmp / "factors.yaml"),
        "sites": sites,
        "kpi": {"max_gap_seconds": STEP_S},
        **extra,
    }
    path = tmp / "greendc.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def report_cli(config: Path, out: Path, **kw: Any) -> int:
    """``greendc report`` as a user runs it (the command line's own parser); its exit code.

    Keywords are the options: ``month``, ``year``, ``eu_eed``, ``site``, ``format`` and
    ``source`` (default ``embedded``).
    """
    options: dict[str, Any] = {"format": "csv,xlsx,html,pdf", "source": "embedded", **kw}
    argv = ["report", "--config", str(config), "--out", str(out)]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value not in (None, False):
            argv += [flag, str(value)]
    return main(argv)


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    """The golden store and config, and the report written from them (exit code)."""
    tmp = tmp_path_factory.mktemp("golden")
    config = write_config(tmp, [BER1, SGX])
    store = EmbeddedStore(tmp / "store.sqlite")
    store.write(golden_readings())
    store.close()
    out = tmp / "out"
    code = report_cli(config, out, month="2026-03")
    return config, out, code


def _csv_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(encoding="utf-8-sig") as f:
        return {(r["site"], r["kpi"]): r for r in csv.DictReader(f)}


def test_golden_month_exit_code_and_files(golden: tuple[Path, Path, int]) -> None:
    _, out, code = golden
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    stem = "greendc-report-2026-03"
    assert names == sorted(f"{stem}{s}" for s in (".csv", "-daily.csv", ".xlsx", ".html", ".pdf"))


def test_golden_month_csv(golden: tuple[Path, Path, int]) -> None:
    rows = _csv_rows(golden[1] / "greendc-report-2026-03.csv")
    for key, want in EXPECTED.items():
        assert float(rows[key]["value_full"]) == pytest.approx(want, rel=1e-9, abs=1e-9), key
    assert rows[("ber1", "pue")]["label"] == "PUE1 (interim)"
    assert rows[("ber1", "E_DC")]["unit"] == "kWh"
    assert rows[("ber1", "scope2_location")]["unit"] == "tCO2e"
    assert "test grid average" in rows[("ber1", "scope2_location")]["note"]
    assert "ΣE_DC/ΣE_IT" in rows[("fleet", "fleet_pue")]["label"]
    # February: 160 kW / 100 kW, so PUE 1.6 and E_DC 160 x 672 h.
    assert float(rows[("ber1", "pue")]["prev_month"]) == pytest.approx(1.6, rel=1e-9)
    assert float(rows[("ber1", "pue")]["change_prev_month"]) == pytest.approx(-0.0625, rel=1e-9)
    assert float(rows[("ber1", "E_DC")]["prev_month"]) == pytest.approx(160 * FEB_H, rel=1e-9)
    assert rows[("ber1", "pue")]["last_year"] == ""  # no data for March 2025
    # No carbon-free share for SG-T: CFE withheld with the reason, not a number.
    assert rows[("sgx", "cfe")]["value"] == ""
    assert "carbon-free share" in rows[("sgx", "cfe")]["note"]
    assert rows[("sgx", "wue")]["status"] == "withheld"
    assert rows[("sgx", "wue")]["note"].startswith("not metered")


def test_golden_month_daily_follows_local_days_across_dst(golden: tuple[Path, Path, int]) -> None:
    with (golden[1] / "greendc-report-2026-03-daily.csv").open(encoding="utf-8-sig") as f:
        daily = list(csv.DictReader(f))
    ber_it = {r["day"]: r for r in daily if r["site"] == "ber1" and r["kpi"] == "E_IT"}
    assert len(ber_it) == 31
    assert {r["unit"] for r in ber_it.values()} == {"kWh"}
    assert float(ber_it["2026-03-29"]["value_full"]) == pytest.approx(100 * 23, rel=1e-9)
    assert float(ber_it["2026-03-28"]["value_full"]) == pytest.approx(100 * 24, rel=1e-9)
    dc = [r for r in daily if r["site"] == "ber1" and r["kpi"] == "E_DC"]
    total = sum(float(r["value_full"]) for r in dc)
    assert total == pytest.approx(E_DC_BER, rel=1e-9)


def test_golden_month_xlsx(golden: tuple[Path, Path, int]) -> None:
    wb = load_workbook(golden[1] / "greendc-report-2026-03.xlsx", read_only=True)
    assert wb.sheetnames == ["Summary", "Fleet", "Daily", "Fleet daily", "Notes"]
    got = {}
    for sheet in ("Summary", "Fleet"):
        rows = list(wb[sheet].iter_rows(values_only=True))
        head = list(rows[0])
        site, kpi, value = (head.index(h) for h in ("Site code", "KPI code", "Value"))
        got.update({(r[site], r[kpi]): r[value] for r in rows[1:]})
    for key, want in EXPECTED.items():
        assert got[key] == pytest.approx(want, rel=1e-9, abs=1e-9), key
    daily = list(wb["Daily"].iter_rows(values_only=True))
    dh = list(daily[0])
    code, day = dh.index("Site code"), dh.index("Day")
    it = [
        r[dh.index("IT energy (kWh)")]
        for r in daily[1:]
        if r[code] == "ber1" and r[day].date() == date(2026, 3, 29)
    ]
    assert it == [pytest.approx(2300, rel=1e-9)]
    wb.close()


def test_golden_month_html_shows_the_figures(golden: tuple[Path, Path, int]) -> None:
    text = (golden[1] / "greendc-report-2026-03.html").read_text(encoding="utf-8")
    for want in EXPECTED_TEXT:
        assert want in text, want
    # Self-contained: charts embedded, nothing fetched.
    assert text.count("data:image/png;base64,") == 3 * 4  # fleet + 2 sites, four panels each
    assert not re.search(r"""src=['"]https?:""", text)


def test_golden_month_pdf_pages(golden: tuple[Path, Path, int]) -> None:
    data = (golden[1] / "greendc-report-2026-03.pdf").read_bytes()
    assert data.startswith(b"%PDF")
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", data))
    # Overview (3 rows), charts with tables for the fleet and both sites, the notes.
    assert pages >= 1 + 3 + 1


def test_pdf_of_many_sites_paginates_and_charts_only_the_fleet(tmp_path: Path) -> None:
    sites = [{**SGX, "name": f"s{i:02d}"} for i in range(23)]
    config = write_config(tmp_path, sites)
    EmbeddedStore(tmp_path / "store.sqlite").close()
    report = _report(load_config(config), Period(2026, 3), with_history=False)
    assert [s.name for s in chart_scopes(report)] == ["Fleet of 23 sites"]
    path = write_pdf(report, tmp_path, "many")
    pages = len(re.findall(rb"/Type\s*/Page\b(?!s)", path.read_bytes()))
    # 24 overview rows take two pages; one chart page; the notes.
    assert pages == page_count(report)
    assert pages >= 2 + 1 + 1


def _report(settings: Settings, period: Period, *, with_history: bool = True) -> Report:
    emb = settings.sinks.embedded
    assert emb is not None
    source = EmbeddedSource(emb.path, water_meters_of(settings))
    try:
        return build_report(
            settings,
            source,
            period,
            load_factors(settings.emission_factors_file),
            with_deltas_from_history=with_history,
            now=datetime(2026, 4, 2, tzinfo=UTC),
        )
    finally:
        source.close()


def test_periods_follow_dst_in_berlin() -> None:
    mar, oct_ = Period(2026, 3), Period(2026, 10)
    assert mar.window("Europe/Berlin").seconds == BER_H * 3600
    assert oct_.window("Europe/Berlin").seconds == (31 * 24 + 1) * 3600
    hours = {d: w.seconds // 3600 for d, w in oct_.days("Europe/Berlin")}
    assert hours[date(2026, 10, 25)] == 25
    assert sum(hours.values()) == 745
    assert Period(2026, 1).previous() == Period(2025, 12)
    assert Period(2026, 3).last_year() == Period(2025, 3)
    with pytest.raises(ValueError, match="YYYY-MM"):
        Period.parse_month("2026-13")


def test_october_fall_back_day_has_25_hours_of_energy(tmp_path: Path) -> None:
    site = {**BER1, "contracts": []}
    config = write_config(tmp_path, [site])
    lo, hi = _ts(2026, 10, 24, "Europe/Berlin"), _ts(2026, 10, 27, "Europe/Berlin")
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(list(counter_readings("ber1", "ups", "it", "energy_wh", lo, hi, lambda t: 1e5)))
    store.close()
    report = _report(load_config(config), Period(2026, 10), with_history=False)
    days = {d.day: d.e_it_kwh for d in report.sites[0].daily}
    assert days[date(2026, 10, 25)] == pytest.approx(2500, rel=1e-9)
    assert days[date(2026, 10, 24)] == pytest.approx(2400, rel=1e-9)
    assert days[date(2026, 10, 1)] is None  # no data that day: withheld, not zero


def test_month_with_no_data_exits_non_zero_and_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, [BER1])
    EmbeddedStore(tmp_path / "store.sqlite").close()
    code = report_cli(config, tmp_path / "out", month="2026-03", format="csv,html")
    err = capsys.readouterr().err
    assert code == ExitCode.NO_DATA
    assert "nothing could be computed" in err
    rows = _csv_rows(tmp_path / "out" / "greendc-report-2026-03.csv")
    assert rows[("ber1", "E_DC")]["value"] == ""
    assert rows[("ber1", "E_DC")]["status"] == "withheld"
    assert rows[("ber1", "pue")]["value"] == ""
    html = (tmp_path / "out" / "greendc-report-2026-03.html").read_text(encoding="utf-8")
    assert "no data for ber1 in 2026-03" in html


def test_site_without_it_meter_withholds_pue_but_reports_energy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = {**BER1, "meters": [m for m in BER1["meters"] if m["role"] != "it"]}
    config = write_config(tmp_path, [site])
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write([r for r in golden_readings() if r.site == "ber1" and r.role != "it"])
    store.close()
    code = report_cli(config, tmp_path / "out", month="2026-03", format="csv")
    assert code == 0
    rows = _csv_rows(tmp_path / "out" / "greendc-report-2026-03.csv")
    assert rows[("ber1", "pue")]["value"] == ""
    assert rows[("ber1", "pue")]["status"] == "withheld"
    assert rows[("ber1", "pue")]["note"].startswith("not metered")
    assert float(rows[("ber1", "E_DC")]["value"]) == pytest.approx(E_DC_BER, rel=1e-9)
    assert "no IT meter" in capsys.readouterr().err


def test_missing_emission_factor_withholds_emissions_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = {**BER1, "grid_zone": "XX"}
    config = write_config(tmp_path, [site])
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write([r for r in golden_readings() if r.site == "ber1"])
    store.close()
    code = report_cli(config, tmp_path / "out", month="2026-03", format="csv")
    assert code == 0
    rows = _csv_rows(tmp_path / "out" / "greendc-report-2026-03.csv")
    for kpi in ("scope2_location", "scope2_market", "cue", "cfe"):
        assert rows[("ber1", kpi)]["value"] == "", kpi
        assert "no emission factors for grid zone 'XX'" in rows[("ber1", kpi)]["note"]
    assert float(rows[("ber1", "pue")]["value"]) == pytest.approx(1.5, rel=1e-9)
    assert "emission factor missing" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"month": "2026-3"}, "YYYY-MM"),
        ({"month": "2026-03", "format": "csv,docx"}, "docx"),
        ({"month": "2026-03", "site": "nope"}, "not in the config"),
        ({"month": "2026-03", "eu_eed": True}, "--year"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kw: dict[str, Any], message: str
) -> None:
    config = write_config(tmp_path, [BER1])
    EmbeddedStore(tmp_path / "store.sqlite").close()
    assert report_cli(config, tmp_path / "out", **kw) == ExitCode.INVALID
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_store_is_a_clear_operational_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, [BER1])
    assert report_cli(config, tmp_path / "out", month="2026-03") == ExitCode.FAILURE
    assert "does not exist" in capsys.readouterr().err


def test_eu_eed_annual_export(golden: tuple[Path, Path, int], tmp_path: Path) -> None:
    import json

    config = golden[0]
    code = report_cli(config, tmp_path, year="2026", eu_eed=True, site="ber1")
    # Two months of data in 2026: every annual energy total covers too little of the year.
    assert code == ExitCode.NO_DATA
    doc = json.loads((tmp_path / "greendc-eu-eed-2026-ber1.json").read_text(encoding="utf-8"))
    assert "2024/1364" in doc["regulation"]
    fields = {f["field"]: f for f in doc["sites"][0]["fields"]}
    assert fields["installed_it_power"]["value"] == 150
    # Shown for what it is: the energy accounted for, incomplete, with its shares of the year.
    total = fields["total_energy_consumption"]
    assert total["status"] == "incomplete"
    assert total["value"] > 0 and total["coverage"] < 0.2
    assert total["measured_share"] + total["bridged_share"] == pytest.approx(total["coverage"])
    assert total["missing_share"] == pytest.approx(1 - total["coverage"])
    assert fields["renewable_energy_go"]["value"] == pytest.approx(20000)
    for name, _, _ in NOT_MEASURED:
        assert fields[name]["status"] == "not measured"
    with (tmp_path / "greendc-eu-eed-2026-ber1.csv").open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["field"] for r in rows} == set(fields)


def test_eu_eed_with_a_full_year(tmp_path: Path) -> None:
    import json

    site = {**SGX, "meters": [*SGX["meters"], {"name": "w", "role": "water"}]}
    config = write_config(tmp_path, [site], kpi={"max_gap_seconds": 7200})
    lo, hi = _ts(2025, 1, 1, "Asia/Singapore") - 3600, _ts(2026, 1, 1, "Asia/Singapore") + 3600
    store = EmbeddedStore(tmp_path / "store.sqlite")
    hourly = []
    for meter, role, field, rate in (
        ("incomer", "facility", "energy_wh", 260e3),
        ("pdu", "it", "energy_wh", 200e3),
        ("w", "water", "water_l", 100.0),
    ):
        hourly += [
            Reading("sgx", meter, role, r.ts_ms, r.fields)
            for r in counter_readings("sgx", meter, role, field, lo, hi, lambda t, v=rate: v)
            if (r.ts_ms // 1000 - lo) % 3600 == 0
        ]
    store.write(hourly)
    store.close()
    assert report_cli(config, tmp_path / "o", year="2025", eu_eed=True) == ExitCode.OK
    doc = json.loads((tmp_path / "o" / "greendc-eu-eed-2025.json").read_text(encoding="utf-8"))
    f = {x["field"]: x for x in doc["sites"][0]["fields"]}
    assert f["total_energy_consumption"]["value"] == pytest.approx(260 * 8760, rel=1e-9)
    assert f["it_energy_consumption"]["value"] == pytest.approx(200 * 8760, rel=1e-9)
    assert f["pue"]["value"] == pytest.approx(1.3, rel=1e-9)
    assert f["total_water_input"]["value"] == pytest.approx(100 * 8760 / 1000, rel=1e-9)
    assert f["wue"]["value"] == pytest.approx(0.5, rel=1e-9)
    assert f["backup_generator_energy"]["status"] == "withheld"
    assert f["backup_generator_energy"]["note"].startswith("not metered")


def test_hourly_grid_factors_from_config_replace_the_annual_factor(tmp_path: Path) -> None:
    """A site's hourly factor CSV drives location-based Scope 2 (hand-computed)."""
    import numpy as np

    from greendc.config import Site
    from greendc.energy import IntervalSeries
    from greendc.exporters.report.compute import kpis_for
    from greendc.factors import load_factors
    from greendc.kpi import Window

    start = 1_767_225_600  # 2026-01-01T00:00:00Z
    csv = tmp_path / "sg-hourly.csv"
    # 0.3 kg/kWh for the first 12 hours, 0.6 for the next 12
    csv.write_text(
        "ts,kg_per_kwh\n"
        + "".join(f"{start + h * 3600},{0.3 if h < 12 else 0.6}\n" for h in range(24))
    )
    site = Site.model_validate(
        {
            "name": "sg9",
            "grid_zone": "SG",
            "installed_it_kw": 10,
            "pue_category": 1,
            "hourly_factors_file": str(csv),
            "meters": [
                {"name": "in", "role": "facility"},
                {"name": "it", "role": "it", "point": "ups_output"},
            ],
        }
    )
    n = 24 * 60
    per_min_wh = np.full(n, 1000.0 / 60)  # 1 kWh per hour of facility (all grid) energy
    energies = {
        "in": IntervalSeries(start, 60, per_min_wh, np.full(n, 60.0)),
        "it": IntervalSeries(start, 60, per_min_wh / 1.5, np.full(n, 60.0)),
    }
    out, reason = kpis_for(site, energies, Window(start, start + 86400), load_factors(), 0.9)
    assert reason is None
    loc = out.kpis["scope2_location"]
    assert loc.value is not None
    expected_kg = 12 * 1.0 * 0.3 + 12 * 1.0 * 0.6  # 10.8 kg, not 24 x 0.4057 = 9.74 kg
    unit_scale = {"kgCO2e": 1.0, "tCO2e": 1000.0, "gCO2e": 0.001}[loc.unit]
    assert loc.value * unit_scale == pytest.approx(expected_kg)


# ---------------------------------------------------------------------------------------
# What the report could not do: exit codes, hints, per-run minimum coverage


def _sgx_store(tmp_path: Path, incomer_days: float | None) -> None:
    """March 2026 for sgx: the IT meter complete, the incomer for ``incomer_days`` days."""
    lo, hi = _ts(2026, 3, 1, "Asia/Singapore") - 900, _ts(2026, 4, 1, "Asia/Singapore") + 900
    readings = list(counter_readings("sgx", "pdu", "it", "energy_wh", lo, hi, lambda t: 200e3))
    if incomer_days is not None:
        stop = _ts(2026, 3, 1, "Asia/Singapore") + int(incomer_days * 86400)
        readings += counter_readings(
            "sgx", "incomer", "facility", "energy_wh", lo, stop, lambda t: 260e3
        )
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write(readings)
    store.close()


def _csv_rows(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return {(r["site"], r["kpi"]): r for r in csv.DictReader(f)}


def test_contracted_energy_alone_is_not_a_computed_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No readings at all; the site holds a GO contract and has no on-site renewable meter:
    # the renewable total is contracts only and must not make the run a success.
    site = {**SGX, "contracts": [{"month": "2026-03", "kind": "go", "energy_kwh": 500}]}
    config = write_config(tmp_path, [site])
    EmbeddedStore(tmp_path / "store.sqlite").close()
    code = report_cli(config, tmp_path / "out", month="2026-03", format="csv")
    assert code == ExitCode.NO_DATA
    assert "no measured figure is ok" in capsys.readouterr().err
    rows = _csv_rows(tmp_path / "out" / "greendc-report-2026-03.csv")
    assert rows[("sgx", "E_renewable")]["status"] == "from contracts"
    assert rows[("sgx", "E_DC")]["status"] == "withheld"


def test_min_coverage_per_run_decides_ok_or_incomplete(tmp_path: Path) -> None:
    # The incomer reports for 26 of 31 days (83.9 %): PUE on the days both meters cover is
    # 260/200 = 1.3; E_DC keeps its own coverage.
    _sgx_store(tmp_path, incomer_days=26)
    config = write_config(tmp_path, [SGX])
    out = tmp_path / "out"
    assert report_cli(config, out, month="2026-03", format="csv") == ExitCode.OK
    rows = _csv_rows(out / "greendc-report-2026-03.csv")
    pue_row = rows[("sgx", "pue")]
    assert float(pue_row["value"]) == pytest.approx(1.3)
    assert pue_row["status"] == "incomplete"
    assert float(pue_row["coverage"]) == pytest.approx(26 / 31, abs=1e-3)
    assert float(pue_row["missing_share"]) == pytest.approx(5 / 31, abs=1e-3)
    assert rows[("sgx", "E_DC")]["status"] == "incomplete"
    assert float(rows[("sgx", "E_DC")]["value"]) == pytest.approx(260 * 26 * 24, rel=1e-3)
    assert rows[("sgx", "E_IT")]["status"] == "ok"
    out80 = tmp_path / "out80"
    code = report_cli(config, out80, month="2026-03", format="csv", min_coverage="80%")
    assert code == ExitCode.OK
    rows = _csv_rows(out80 / "greendc-report-2026-03.csv")
    assert rows[("sgx", "pue")]["status"] == "ok"
    assert float(rows[("sgx", "pue")]["value"]) == pytest.approx(1.3)


@pytest.mark.parametrize("text", ["1.5", "-1", "lots", "120%"])
def test_a_bad_min_coverage_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    config = write_config(tmp_path, [SGX])
    EmbeddedStore(tmp_path / "store.sqlite").close()
    code = report_cli(config, tmp_path / "out", month="2026-03", min_coverage=text)
    assert code == ExitCode.INVALID
    assert "--min-coverage" in capsys.readouterr().err


def test_meters_sparser_than_max_gap_get_a_hint_naming_the_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Readings every 900 s, kpi.max_gap_seconds 300: every step is a gap. The counters are
    # bridged (monthly totals stay right) and the report says which setting to change.
    _sgx_store(tmp_path, incomer_days=31)
    config = write_config(tmp_path, [SGX], kpi={"max_gap_seconds": 300})
    out = tmp_path / "out"
    report_cli(config, out, month="2026-03", format="csv")
    err = capsys.readouterr().err
    assert "meter incomer reports every 900 s" in err
    assert "kpi.max_gap_seconds (300 s)" in err
    rows = _csv_rows(out / "greendc-report-2026-03.csv")
    e_dc = rows[("sgx", "E_DC")]
    assert float(e_dc["value"]) == pytest.approx(260 * 744)
    assert float(e_dc["bridged_share"]) == pytest.approx(1.0)
    assert rows[("sgx", "pue")]["status"] == "ok"  # on common (bridged) ground


def test_the_residual_mix_note_follows_the_factor_table_not_a_note_text(
    golden: tuple[Path, Path, int],
) -> None:
    config, _, _ = golden
    report = _report(load_config(config, env={}), Period(2026, 3), with_history=False)
    said = "market-based: no residual mix is published for the zone; grid average used"
    notes = {s.site.name: s.notes for s in report.sites}
    assert said in notes["sgx"]  # SG-T publishes no residual mix
    assert said not in notes["ber1"]  # DE-T does
