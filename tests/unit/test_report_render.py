"""The report's renderers: what a reader and a spreadsheet get, pinned so it cannot regress.

Built from the golden month of test_report (two sites, hand-computed figures): number
formats, tables, AutoFilter and print setup of the XLSX; the fleet on its own sheet, so a
pivot by site reproduces the fleet totals exactly; the CSV's BOM, tidy daily rows, rounding
and semicolon variant; the HTML's viewport and print rules; chart axes that contain their
data; comparisons that say "no data for <month>".
"""

from __future__ import annotations

import csv
import math
from datetime import UTC, date, datetime
from pathlib import Path

import pandas as pd
import pytest
from openpyxl import load_workbook

from greendc.config import load_config
from greendc.exporters.report import Period, build_report
from greendc.exporters.report.charts import Scope, chart_scopes, emissions_equal, panel_figures
from greendc.exporters.report.compute import DailyRow, Report
from greendc.exporters.report.fmt import MACHINE_DECIMALS, fmt_change, fmt_value
from greendc.exporters.report.render_csv import SEMICOLON, write_csv
from greendc.exporters.report.render_html import render_html
from greendc.exporters.report.render_xlsx import NUMBER_FORMATS, write_xlsx
from greendc.exporters.report.source import EmbeddedSource, water_meters_of
from greendc.factors import load_factors
from greendc.store import EmbeddedStore
from tests.unit.test_report import BER1, E_DC_BER, FEB_H, SGX, golden_readings, write_config


def _build(tmp: Path, sites: list[dict[str, object]]) -> Report:
    config = write_config(tmp, sites)
    store = EmbeddedStore(tmp / "store.sqlite")
    names = {str(s["name"]) for s in sites}
    store.write([r for r in golden_readings() if r.site in names])
    store.close()
    settings = load_config(config)
    assert settings.sinks.embedded is not None
    source = EmbeddedSource(settings.sinks.embedded.path, water_meters_of(settings))
    try:
        return build_report(
            settings,
            source,
            Period(2026, 3),
            load_factors(settings.emission_factors_file),
            now=datetime(2026, 4, 2, tzinfo=UTC),
        )
    finally:
        source.close()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The golden month for both sites."""
    return _build(tmp_path_factory.mktemp("render"), [BER1, SGX])


# --- numbers for people ------------------------------------------------------------------


def test_figures_get_a_magnitude_and_precision_for_people() -> None:
    assert fmt_value(4_241_919.2, "kWh") == "4.24 GWh"
    assert fmt_value(840_558.3, "kWh") == "840.6 MWh"
    assert fmt_value(2174.618, "tCO2e") == "2,175 t CO₂e"
    assert fmt_value(0.0045, "ratio") == "0.45 %"
    assert fmt_value(0.533, "ratio") == "53.3 %"
    assert fmt_value(1.38912, "") == "1.39"
    assert fmt_value(89_160.0, "L") == "89.2 m³"
    assert fmt_value(None, "kWh") == "—"


def test_comparisons_say_no_data_for_the_month(report: Report) -> None:
    ber = {r.kpi: r for r in report.sites[0].rows}
    # February 2026 exists for ber1 (160 kW), March 2025 does not.
    assert fmt_change(ber["E_DC"], last_year=False, period_name="February 2026").startswith("+")
    assert fmt_change(ber["E_DC"], last_year=True, period_name="March 2025") == (
        "no data for March 2025"
    )
    assert fmt_change(ber["pue"], last_year=False, period_name="February 2026") == (
        "−0.10 (was 1.60)"
    )
    html = render_html(report)
    assert "no data for March 2025" in html
    assert "no data for February 2026" in html  # sgx (and so the fleet) has no February


def test_fleet_comparison_sums_the_sites_earlier_figures(tmp_path: Path) -> None:
    one = _build(tmp_path, [BER1])
    fleet = {r.kpi: r for r in one.fleet_rows}
    assert fleet["E_DC"].prev_month == pytest.approx(160 * FEB_H, rel=1e-9)
    assert fleet["fleet_pue"].prev_month == pytest.approx(1.6, rel=1e-9)
    assert fleet["E_DC"].last_year is None


# --- charts ------------------------------------------------------------------------------


def _ylim_contains(fig_ax: tuple[float, float], *values: float) -> bool:
    lo, hi = fig_ax
    return all(lo <= v <= hi for v in values if math.isfinite(v))


def test_chart_axes_contain_their_data_and_target(report: Report) -> None:
    ber = next(s for s in chart_scopes(report) if s.key == "ber1")
    figs = panel_figures(ber)
    energy, pue, ref, emissions = (f.axes[0] for f in figs)
    days = list(ber.rows)
    dc_mwh = [d.e_dc_kwh / 1000 for d in days if d.e_dc_kwh is not None]
    assert _ylim_contains(energy.get_ylim(), *dc_mwh)
    assert _ylim_contains(pue.get_ylim(), *[d.pue for d in days if d.pue is not None], 1.45)
    shares = [d.ref * 100 for d in days if d.ref is not None]
    assert _ylim_contains(ref.get_ylim(), *shares, 20.0)
    loc = [d.scope2_location_t for d in days if d.scope2_location_t is not None]
    assert _ylim_contains(emissions.get_ylim(), *loc)
    # A target line is drawn where a target is set: dashed, at the target.
    assert [ln.get_ydata()[0] for ln in pue.get_lines() if ln.get_linestyle() == "--"] == [1.45]
    for f in figs:
        f.clear()


def test_small_shares_are_not_drawn_on_a_0_to_100_axis_and_no_target_means_no_line() -> None:
    rows = [
        DailyRow(
            "x",
            date(2026, 3, d),
            100.0,
            80.0,
            None,
            None,
            None,
            0.4,
            0.0,
            1.25,
            0.004,
            0.05,
            0.05,
            1.0,
            1.0,
        )
        for d in range(1, 11)
    ]
    scope = Scope("x", "X", "March 2026", rows, None, None)
    figs = panel_figures(scope)
    pue, ref, emissions = figs[1].axes[0], figs[2].axes[0], figs[3].axes[0]
    lo, hi = ref.get_ylim()
    assert lo == 0 and 0.4 <= hi <= 1.0  # 0.4 % fills the panel, not 0-100 %
    assert not [ln for ln in pue.get_lines() if ln.get_linestyle() == "--"]
    assert not [ln for ln in ref.get_lines() if ln.get_linestyle() == "--"]
    # Market-based equals location-based: one series, said so in the legend.
    assert emissions_equal(rows)
    legend = emissions.get_legend()
    assert legend is not None
    assert [t.get_text() for t in legend.get_texts()] == ["location- = market-based"]
    for f in figs:
        f.clear()


def test_legends_sit_inside_their_axes(report: Report) -> None:
    fleet = next(s for s in chart_scopes(report) if s.key == "fleet")
    for fig in panel_figures(fleet):
        fig.canvas.draw()
        ax = fig.axes[0]
        legend = ax.get_legend()
        assert legend is not None
        box, frame = legend.get_window_extent(), ax.get_window_extent()
        assert frame.x0 <= box.x0 and box.x1 <= frame.x1 + 1
        assert frame.y0 <= box.y0 and box.y1 <= frame.y1 + 1
        fig.clear()


# --- HTML --------------------------------------------------------------------------------


def test_html_is_responsive_and_prints(report: Report) -> None:
    html = render_html(report)
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    assert "@media (max-width:720px)" in html
    assert "@media print" in html and "@page" in html and "counter(page)" in html
    assert "break-after:avoid" in html
    assert "overflow-x:auto" in html  # tables scroll sideways on a phone
    # The first screen: answers before any chart.
    first = html[: html.index("<img")]
    for want in ("Total energy", "Power usage effectiveness", "Renewable share"):
        assert want in first
    assert "Emissions, location-based" in first and "Emissions, market-based" in first
    assert "Why the two emission figures differ" in first
    # ber1's 20 MWh GO counts as zero, but its residual mix (0.5) is above the grid (0.4);
    # sgx has no residual mix: both methods use its grid average.
    assert "0.40 t CO₂e (0.3 %) higher than location-based" in first
    assert "no residual mix is published for the grid of sgx" in first
    assert "March 2026" in first and "Berlin test" in first


# --- XLSX --------------------------------------------------------------------------------


def test_xlsx_structure(report: Report, tmp_path: Path) -> None:
    wb = load_workbook(write_xlsx(report, tmp_path, "r"))
    assert wb.sheetnames == ["Summary", "Fleet", "Daily", "Fleet daily", "Notes"]
    for ws in wb.worksheets:
        assert len(ws.tables) == 1, ws.title
        table = next(iter(ws.tables.values()))
        assert table.ref == ws.dimensions, ws.title
        assert table.autoFilter is not None and table.autoFilter.ref == table.ref, ws.title
        assert ws.page_setup.orientation == "landscape", ws.title
        assert ws.page_setup.fitToWidth == 1 and ws.sheet_properties.pageSetUpPr.fitToPage
        assert ws.print_title_rows == "$1:$1", ws.title
        assert ws.freeze_panes is not None
        widths = [ws.column_dimensions[c].width for c in "ABC"]
        assert all(w and w >= 8 for w in widths), ws.title
    summary = wb["Summary"]
    head = [c.value for c in summary[1]]
    site, kpi, value = (head.index(h) for h in ("Site code", "KPI code", "Value"))
    formats = {}
    for row in summary.iter_rows(min_row=2):
        assert row[site].value != "fleet"
        formats[(row[site].value, row[kpi].value)] = row[value].number_format
    assert formats[("ber1", "E_DC")] == NUMBER_FORMATS["kWh"] == "#,##0.0"
    assert formats[("ber1", "ref")] == "0.00%"
    assert formats[("ber1", "scope2_location")] == "#,##0.000"
    assert formats[("ber1", "pue")] == "0.000"
    assert "General" not in formats.values()
    units = {r[kpi].value: r[head.index("Unit")].value for r in summary.iter_rows(min_row=2)}
    assert units["pue"] == "kWh/kWh" and units["ref"] == "%"
    assert {r[0].value for r in wb["Fleet"].iter_rows(min_row=2)} == {"Fleet (2 sites)"}
    assert summary.cell(2, 1).value == "Berlin test"


def test_a_pivot_by_site_reproduces_the_fleet_totals_exactly(
    report: Report, tmp_path: Path
) -> None:
    path = write_xlsx(report, tmp_path, "r")
    sites = pd.read_excel(path, sheet_name="Summary")
    fleet = pd.read_excel(path, sheet_name="Fleet").set_index("KPI code")["Value"]
    pivot = sites.pivot_table(index="KPI code", columns="Site code", values="Value", aggfunc="sum")
    summed = ("E_DC", "E_IT", "E_grid", "E_renewable", "scope2_location", "scope2_market")
    for key in summed:
        # openpyxl stores 16 significant digits (a spreadsheet keeps 15): equal to that, and
        # once, not twice (the fleet is on its own sheet).
        assert pivot.loc[key].sum() == pytest.approx(fleet[key], rel=1e-15, abs=0), key
        assert f"{pivot.loc[key].sum():.15g}" == f"{fleet[key]:.15g}", key
    assert fleet["E_DC"] == E_DC_BER + 260 * 744
    assert pivot.loc["E_DC"].sum() == E_DC_BER + 260 * 744


# --- CSV ---------------------------------------------------------------------------------


def test_csv_is_tidy_with_bom_units_and_documented_rounding(report: Report, tmp_path: Path) -> None:
    summary, daily = write_csv(report, tmp_path, "r")
    assert summary.read_bytes().startswith(b"\xef\xbb\xbf")
    with summary.open(encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        if r["value_full"]:
            d = MACHINE_DECIMALS[r["unit"]]
            assert float(r["value"]) == round(float(r["value_full"]), d), r["kpi"]
            assert len(r["value"].split(".")[-1]) == d or d == 0
    assert {r["scope"] for r in rows} == {"site", "fleet"}
    with daily.open(encoding="utf-8-sig") as f:
        days = list(csv.DictReader(f))
    assert list(days[0]) == [
        "period",
        "scope",
        "site",
        "site_name",
        "day",
        "kpi",
        "value",
        "unit",
        "value_full",
    ]
    keys = [(r["site"], r["day"], r["kpi"]) for r in days]
    assert len(keys) == len(set(keys))  # one row per site x day x KPI
    assert all(" (" not in r["kpi"] for r in days)


def test_semicolon_csv_has_decimal_commas_and_the_same_figures(
    report: Report, tmp_path: Path
) -> None:
    comma, _ = write_csv(report, tmp_path, "r")
    semi, daily = write_csv(report, tmp_path, "r", SEMICOLON)
    assert semi.name == "r-semicolon.csv" and daily.name == "r-daily-semicolon.csv"
    with comma.open(encoding="utf-8-sig") as f:
        want = list(csv.DictReader(f))
    with semi.open(encoding="utf-8-sig") as f:
        got = list(csv.DictReader(f, delimiter=";"))
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert "." not in g["value"] and "." not in g["value_full"]
        assert g["value_full"].replace(",", ".") == w["value_full"]
        assert g["label"] == w["label"]
    df = pd.read_csv(semi, sep=";", decimal=",", encoding="utf-8-sig")
    ber_dc = df[(df.site == "ber1") & (df.kpi == "E_DC")]["value_full"].iloc[0]
    assert ber_dc == pytest.approx(E_DC_BER, rel=1e-12)


def test_a_change_that_rounds_to_nothing_has_no_sign() -> None:
    from greendc.exporters.report.compute import Row

    r = Row("s", "pue", "PUE1", 1.503, "", 1.0, "ok", prev_month=1.506)
    assert fmt_change(r, last_year=False, period_name="October 2026") == "±0.00 (was 1.51)"
    r = Row("s", "ref", "REF", 0.0073, "ratio", 1.0, "ok", prev_month=0.0079)
    assert fmt_change(r, last_year=False, period_name="October 2026") == "−0.1 pp (was 0.79 %)"
    r = Row("s", "E_DC", "E", 1000.0, "kWh", 1.0, "ok", prev_month=1000.0)
    assert fmt_change(r, last_year=False, period_name="October 2026").startswith("±0.0 %")


def test_the_command_line_writes_the_semicolon_csv_only_when_asked(tmp_path: Path) -> None:
    from greendc.exporters.report import ReportRequest, parse_formats
    from tests.unit.test_report import report_cli

    assert parse_formats("csv-semicolon,csv") == ("csv", "csv-semicolon")
    assert "csv-semicolon" not in ReportRequest.__dataclass_fields__["formats"].default
    config = write_config(tmp_path, [BER1])
    store = EmbeddedStore(tmp_path / "store.sqlite")
    store.write([r for r in golden_readings() if r.site == "ber1"])
    store.close()
    assert report_cli(config, tmp_path / "out", month="2026-03", format="csv-semicolon") == 0
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    stem = "greendc-report-2026-03"
    assert names == [f"{stem}-daily-semicolon.csv", f"{stem}-semicolon.csv"]
