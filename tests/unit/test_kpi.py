"""KPI math on interval energy: hand-computed cases and hypothesis properties."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greendc._errors import KPIError
from greendc.config import Site
from greendc.energy import IntervalSeries, interval_series
from greendc.factors import FactorTable, HourlyFactors, load_factors, parse_factors
from greendc.kpi import (
    SECONDS_PER_YEAR,
    Instrument,
    Measured,
    Window,
    fleet_pue,
    hourly_cfe,
    market_emissions,
    pue,
    site_kpis,
)
from greendc.quality import Quality

MIN_COV = 0.9
NOV_2026 = int(datetime(2026, 11, 1, tzinfo=UTC).timestamp())


def make_site(meters: list[dict[str, Any]], **extra: Any) -> Site:
    data: dict[str, Any] = {
        "name": "s1",
        "grid_zone": "SG",
        "installed_it_kw": 100,
        "pue_category": 2,
        "meters": meters,
    }
    data.update(extra)
    return Site.model_validate(data)


def series(
    *wh: float, start_s: int = 0, step: int = 60, covered: float | None = None
) -> IntervalSeries:
    cov = np.full(len(wh), float(step) if covered is None else covered)
    return IntervalSeries(start_s, step, np.array(wh, dtype=float), cov)


def factors_with(residual: float | None = None, cfe: float | None = None) -> FactorTable:
    zone: dict[str, Any] = {
        "name": "Test",
        "grid_average": {
            "value": 0.5,
            "unit": "kgCO2e/kWh",
            "year": 2024,
            "basis": "direct",
            "boundary": "production",
            "source": "test figure",
        },
    }
    if residual is not None:
        zone["residual_mix"] = {**zone["grid_average"], "value": residual}
    if cfe is not None:
        zone["carbon_free_share"] = {"value": cfe, "year": 2024, "source": "test figure"}
    return parse_factors({"version": 1, "zones": {"SG": zone}})


BASIC = [
    {"name": "inc", "role": "facility"},
    {"name": "pdu", "role": "it", "point": "pdu_output", "zone": "h1"},
    {"name": "crac", "role": "cooling", "zone": "h1"},
]


def test_pue_is_energy_ratio_not_mean_of_instantaneous_ratios() -> None:
    # Quiet minute: facility 300 W, IT 100 W (PUE 3.0). Busy minute: 1200 W, 1000 W (PUE 1.2).
    # Mean of instantaneous PUE = 2.1; energy PUE = (5 + 20) / (1.667 + 16.667) = 1.3636.
    site = make_site(BASIC[:2])
    energies = {
        "inc": interval_series(
            [0, 60, 120], [0, 5, 25], None, interval_seconds=60, max_gap_seconds=300
        ),
        "pdu": interval_series(
            [0, 60, 120],
            [0, 100 / 60, 100 / 60 + 1000 / 60],
            None,
            interval_seconds=60,
            max_gap_seconds=300,
        ),
    }
    out = site_kpis(site, energies, Window(0, 120), factors_with(), MIN_COV)
    mean_of_ratios = (300 / 100 + 1200 / 1000) / 2
    value = out.kpis["pue"].value
    assert value == pytest.approx(25 / (1100 / 60))
    assert value == pytest.approx(1.363636, rel=1e-5)
    assert value != pytest.approx(mean_of_ratios)
    assert out.kpis["pue"].label == "PUE2 (interim)"


def test_pue_label_for_a_year() -> None:
    k = pue(
        Measured(2, 1),
        Measured(1, 1),
        category=3,
        window_seconds=SECONDS_PER_YEAR,
        min_coverage=MIN_COV,
    )
    assert k.label == "PUE3" and k.value == 2


def test_sub_meter_is_subtracted_from_facility() -> None:
    site = make_site(
        [
            {"name": "inc", "role": "facility"},
            {"name": "office", "role": "facility", "sign": -1},
            {"name": "pdu", "role": "it", "point": "pdu_output"},
        ]
    )
    energies = {"inc": series(1000), "office": series(100), "pdu": series(600)}
    out = site_kpis(site, energies, Window(0, 60), factors_with(), MIN_COV)
    assert out.inputs["E_DC"].value == pytest.approx(900)
    assert out.kpis["pue"].value == pytest.approx(1.5)


def test_ppue_per_zone() -> None:
    site = make_site(BASIC)
    energies = {"inc": series(2000), "pdu": series(1000), "crac": series(250)}
    out = site_kpis(site, energies, Window(0, 60), factors_with(), MIN_COV)
    assert out.kpis["ppue:h1"].value == pytest.approx(1.25)
    assert out.kpis["ppue:h1"].label == "pPUE h1"


def test_ref_is_capped_at_one_and_contracts_are_prorated_to_the_window() -> None:
    site = make_site(
        BASIC[:2],
        timezone="UTC",
        contracts=[{"month": "2026-11", "kind": "rec", "energy_kwh": 720}],  # 1 kWh per hour
    )
    # One hour of November: contract share is 1 kWh = 1000 Wh.
    hour = Window(NOV_2026, NOV_2026 + 3600)
    small = {
        "inc": series(*[10.0] * 60, start_s=NOV_2026),
        "pdu": series(*[5.0] * 60, start_s=NOV_2026),
    }
    out = site_kpis(site, small, hour, factors_with(), MIN_COV)
    assert out.inputs["E_certificates"].value == pytest.approx(1000)
    assert out.kpis["ref"].value == 1.0
    assert "capped" in out.kpis["ref"].detail
    assert out.kpis["renewable_share"].value == 1.0
    big = {
        "inc": series(*[40.0] * 60, start_s=NOV_2026),
        "pdu": series(*[5.0] * 60, start_s=NOV_2026),
    }
    out = site_kpis(site, big, hour, factors_with(), MIN_COV)
    assert out.kpis["ref"].value == pytest.approx(1000 / 2400)


def test_contract_month_is_in_the_site_time_zone() -> None:
    site = make_site(
        BASIC[:2],
        timezone="Asia/Singapore",
        contracts=[{"month": "2026-11", "kind": "go", "energy_kwh": 720}],
    )
    # 1 Nov 00:00 UTC is already 08:00 in Singapore: the 8 hours before it are November too.
    before = Window(NOV_2026 - 3600, NOV_2026)
    energies = {
        "inc": series(*[100.0] * 60, start_s=before.start_s),
        "pdu": series(*[50.0] * 60, start_s=before.start_s),
    }
    out = site_kpis(site, energies, before, factors_with(), MIN_COV)
    assert out.inputs["E_certificates"].value == pytest.approx(1000)


def test_market_based_emissions_with_certificates_and_residual_mix() -> None:
    # 1000 kWh grid; a REC for 600 kWh at 0 and a PPA for 100 kWh at 0.02: 300 kWh residual.
    kpi = market_emissions(
        Measured(1_000_000, 1.0),
        [Instrument("rec", 600_000), Instrument("ppa", 100_000, 0.02)],
        residual=factors_with(residual=0.7).zone("SG").residual_mix,
        grid_average=factors_with().zone("SG").grid_average,
        min_coverage=MIN_COV,
    )
    assert kpi.value == pytest.approx(100 * 0.02 + 300 * 0.7)
    assert "residual mix" in kpi.detail


def test_market_based_falls_back_to_grid_average_and_certificates_stop_at_consumption() -> None:
    site = make_site(
        BASIC[:2],
        timezone="UTC",
        contracts=[{"month": "2026-11", "kind": "rec", "energy_kwh": 720_000}],
    )
    w = Window(NOV_2026, NOV_2026 + 60)
    energies = {"inc": series(2000, start_s=NOV_2026), "pdu": series(1000, start_s=NOV_2026)}
    out = site_kpis(site, energies, w, factors_with(), MIN_COV)
    assert out.kpis["scope2_market"].value == pytest.approx(0.0)
    assert out.kpis["scope2_location"].value == pytest.approx(2 * 0.5)
    assert out.kpis["cue"].value == pytest.approx(1.0 / 1.0)  # 1 kg / 1 kWh IT
    no_contract = make_site(BASIC[:2])
    out = site_kpis(no_contract, energies, w, factors_with(), MIN_COV)
    assert out.kpis["scope2_market"].value == pytest.approx(2 * 0.5)
    assert "no residual mix" in out.kpis["scope2_market"].detail


def test_grid_energy_is_facility_minus_onsite_renewable_and_generator() -> None:
    site = make_site(
        [
            *BASIC[:2],
            {"name": "pv", "role": "renewable_onsite"},
            {"name": "gen", "role": "generator"},
        ]
    )
    energies = {
        "inc": series(1000, 1000),
        "pdu": series(500, 500),
        "pv": series(300, 1200),  # more than the site used in the second minute: no export credit
        "gen": series(100, 0),
    }
    out = site_kpis(site, energies, Window(0, 120), factors_with(), MIN_COV)
    assert out.inputs["E_grid"].value == pytest.approx(600 + 0)
    assert out.kpis["scope2_location"].value == pytest.approx(0.6 * 0.5)


def test_grid_import_meter_is_used_when_present() -> None:
    site = make_site([*BASIC[:2], {"name": "tx", "role": "grid_import"}])
    energies = {"inc": series(1000), "pdu": series(500), "tx": series(800)}
    out = site_kpis(site, energies, Window(0, 60), factors_with(), MIN_COV)
    assert out.inputs["E_grid"].value == pytest.approx(800)


def test_location_based_with_hourly_factors() -> None:
    site = make_site(BASIC[:2])
    inc = series(*([1000.0] * 60 + [3000.0] * 60))  # 60 kWh then 180 kWh
    energies = {"inc": inc, "pdu": series(*([500.0] * 120))}
    hourly = HourlyFactors.from_pairs([0, 3600], [0.2, 0.6])
    out = site_kpis(site, energies, Window(0, 7200), factors_with(), MIN_COV, hourly_factors=hourly)
    assert out.kpis["scope2_location"].value == pytest.approx(60 * 0.2 + 180 * 0.6)
    assert "hourly" in out.kpis["scope2_location"].label
    half = HourlyFactors.from_pairs([0], [0.2])
    out = site_kpis(site, energies, Window(0, 7200), factors_with(), MIN_COV, hourly_factors=half)
    # A quarter of the grid energy has an hourly factor: shown, incomplete, with that share.
    assert out.kpis["scope2_location"].quality is Quality.INCOMPLETE
    # (the hour without a factor at the annual factor, 0.5)
    assert out.kpis["scope2_location"].value == pytest.approx(60 * 0.2 + 180 * 0.5)
    assert out.kpis["scope2_location"].coverage["factor"] == pytest.approx(0.25)


def test_hourly_cfe_has_no_carry_over_between_hours() -> None:
    # Hour 1: load 10, clean 15 -> 10 matched (5 surplus lost). Hour 2: load 10, clean 0 ->
    # 10 x grid share 0.5 = 5. CFE = 15 / 20.
    k = hourly_cfe(
        np.array([10.0, 10.0]),
        np.array([15.0, 0.0]),
        0.5,
        inputs={"E_DC": Measured(20, 1)},
        min_coverage=MIN_COV,
    )
    assert k.value == pytest.approx(0.75)
    k = hourly_cfe(np.array([10.0]), np.array([1.0]), None, inputs={}, min_coverage=MIN_COV)
    assert k.value is None and "carbon-free share" in (k.withheld or "")


def test_site_cfe_uses_onsite_renewable_per_hour() -> None:
    site = make_site([*BASIC[:2], {"name": "pv", "role": "renewable_onsite"}])
    energies = {
        "inc": series(*([100.0] * 120)),  # 6 kWh per hour
        "pdu": series(*([50.0] * 120)),
        "pv": series(*([200.0] * 60 + [0.0] * 60)),  # 12 kWh in hour 1, none in hour 2
    }
    out = site_kpis(site, energies, Window(0, 7200), factors_with(cfe=0.25), MIN_COV)
    assert out.kpis["cfe"].value == pytest.approx((6 + 6 * 0.25) / 12)


def test_erf_and_wue() -> None:
    site = make_site(
        [*BASIC[:2], {"name": "heat", "role": "heat_reuse"}, {"name": "water", "role": "water"}]
    )
    energies = {
        "inc": series(2000),
        "pdu": series(1000),
        "heat": series(500),
        "water": IntervalSeries(0, 60, np.array([3.0]), np.array([60.0]), "L"),
    }
    out = site_kpis(site, energies, Window(0, 60), factors_with(), MIN_COV)
    assert out.kpis["erf"].value == pytest.approx(0.25)
    assert out.kpis["wue"].value == pytest.approx(3.0)
    assert out.kpis["wue"].unit == "L/kWh"


def test_no_interval_covered_by_both_inputs_withholds_and_shows_coverage() -> None:
    site = make_site(BASIC[:2])
    energies = {"inc": series(100, 100, covered=30), "pdu": series(50, 50)}
    out = site_kpis(site, energies, Window(0, 120), factors_with(), MIN_COV)
    k = out.kpis["pue"]
    assert k.value is None and k.quality is Quality.WITHHELD
    assert out.inputs["E_DC"].coverage == pytest.approx(0.5)  # the total keeps its own
    assert "E_DC and E_IT" in (k.withheld or "")


def test_pue_stands_on_the_intervals_both_meters_cover() -> None:
    # 100 minutes; IT 1000 Wh every minute, facility 1500 Wh for the first 83 minutes and
    # silent after. From the totals: 124,500 / 100,000 = 1.245. On common ground: 1.50,
    # incomplete at the 90 % threshold, coverage 83 %.
    site = make_site(BASIC[:2])
    fac = IntervalSeries(
        0,
        60,
        np.array([1500.0] * 83 + [0.0] * 17),
        np.array([60.0] * 83 + [0.0] * 17),
    )
    energies = {"inc": fac, "pdu": series(*[1000.0] * 100)}
    out = site_kpis(site, energies, Window(0, 6000), factors_with(), 0.9)
    k = out.kpis["pue"]
    assert k.value == pytest.approx(1.5)
    assert k.quality is Quality.INCOMPLETE
    assert k.covered == pytest.approx(0.83)
    assert k.shares is not None and k.shares.missing == pytest.approx(0.17)
    assert "83.0%" in k.detail
    # The totals keep their own coverage.
    assert out.inputs["E_DC"].value == pytest.approx(124_500)
    assert out.inputs["E_DC"].coverage == pytest.approx(0.83)
    assert out.inputs["E_IT"].coverage == pytest.approx(1.0)
    # At an 80 % threshold the same figure is ok, never 1.25.
    out = site_kpis(site, energies, Window(0, 6000), factors_with(), 0.8)
    assert out.kpis["pue"].value == pytest.approx(1.5)
    assert out.kpis["pue"].quality is Quality.OK


def test_bridged_energy_counts_in_totals_and_on_common_ground_but_not_hourly() -> None:
    site = make_site(BASIC[:2])
    # Facility: 2 hours, the second bridged (counter across a gap); IT measured throughout.
    fac = IntervalSeries(
        0,
        3600,
        np.array([3000.0, 3000.0]),
        np.array([3600.0, 3600.0]),
        bridged_amount=np.array([0.0, 3000.0]),
        bridged_seconds=np.array([0.0, 3600.0]),
    )
    it = IntervalSeries(0, 3600, np.array([2000.0, 2000.0]), np.array([3600.0, 3600.0]))
    hourly = HourlyFactors.from_pairs([0, 3600], [0.5, 0.5])
    out = site_kpis(
        site,
        {"inc": fac, "pdu": it},
        Window(0, 7200),
        factors_with(),
        0.9,
        interval_seconds=3600,
        hourly_factors=hourly,
    )
    assert out.inputs["E_DC"].value == pytest.approx(6000)
    assert out.inputs["E_DC"].shares.bridged == pytest.approx(0.5)
    pue_k = out.kpis["pue"]
    assert pue_k.value == pytest.approx(1.5) and pue_k.quality is Quality.OK
    assert pue_k.shares is not None and pue_k.shares.bridged == pytest.approx(0.5)
    # Hourly emissions: only the measured hour (3 kWh x 0.5), incomplete at 50 %.
    loc = out.kpis["scope2_location"]
    assert loc.value == pytest.approx(3.0 * 0.5)
    assert loc.quality is Quality.INCOMPLETE
    assert "bridged" in loc.detail
    opted = site.model_copy(update={"bridged_in_hourly": True})
    out = site_kpis(
        opted,
        {"inc": fac, "pdu": it},
        Window(0, 7200),
        factors_with(),
        0.9,
        interval_seconds=3600,
        hourly_factors=hourly,
    )
    assert out.kpis["scope2_location"].value == pytest.approx(6.0 * 0.5)


def test_a_zone_without_overhead_meter_has_its_ppue_withheld() -> None:
    site = make_site(
        [
            {"name": "inc", "role": "facility"},
            {"name": "pdu", "role": "it", "point": "pdu_output", "zone": "h1"},
        ]
    )
    out = site_kpis(
        site, {"inc": series(100), "pdu": series(50)}, Window(0, 60), factors_with(), 0.9
    )
    k = out.kpis["ppue:h1"]
    assert k.value is None and k.quality is Quality.WITHHELD
    assert k.withheld == "no overhead meter in this zone"


def test_missing_it_meter_withholds() -> None:
    site = make_site(BASIC[:1])
    out = site_kpis(site, {"inc": series(100)}, Window(0, 60), factors_with(), MIN_COV)
    assert out.kpis["pue"].value is None
    assert "no meter for E_IT" in (out.kpis["pue"].withheld or "")
    # A typed flag says "not metered" (the report's status), not the reason's wording.
    assert out.kpis["pue"].not_metered and out.kpis["cue"].not_metered
    low = site_kpis(
        make_site(BASIC[:2]),
        {"inc": series(100, covered=6), "pdu": series(50)},
        Window(0, 60),
        factors_with(),
        MIN_COV,
    )
    assert low.kpis["pue"].value is None and not low.kpis["pue"].not_metered


def test_unknown_zone_is_a_clear_error() -> None:
    site = make_site(BASIC[:2], grid_zone="XX")
    with pytest.raises(KPIError, match="XX"):
        site_kpis(site, {"inc": series(1), "pdu": series(1)}, Window(0, 60), load_factors(), 0.9)


def test_fleet_pue_is_sum_of_energy_not_mean_of_site_pues() -> None:
    a = site_kpis(
        make_site(BASIC[:2], name="a"),
        {"inc": series(2000), "pdu": series(1000)},
        Window(0, 60),
        factors_with(),
        MIN_COV,
    )
    b = site_kpis(
        make_site(BASIC[:2], name="b"),
        {"inc": series(1200), "pdu": series(400)},
        Window(0, 60),
        factors_with(),
        MIN_COV,
    )
    k = fleet_pue([a, b], min_coverage=MIN_COV)
    assert k.value == pytest.approx(3200 / 1400)
    assert k.value != pytest.approx((2.0 + 3.0) / 2)
    assert "ΣE_DC/ΣE_IT" in k.label


# ---------------------------------------------------------------------------------------
# Properties

energy = st.floats(min_value=0.0, max_value=1e7, allow_nan=False)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(energy, st.floats(min_value=1.0, max_value=1e7)), min_size=1, max_size=20)
)
def test_window_pue_is_energy_weighted_combination_of_sub_windows(
    parts: list[tuple[float, float]],
) -> None:
    kw: dict[str, Any] = {"category": 2, "window_seconds": 60, "min_coverage": MIN_COV}
    total = pue(Measured(sum(p[0] for p in parts), 1), Measured(sum(p[1] for p in parts), 1), **kw)
    subs = [pue(Measured(dc, 1), Measured(it, 1), **kw) for dc, it in parts]
    it_total = sum(p[1] for p in parts)
    weighted = sum((s.value or 0) * it for s, (_, it) in zip(subs, parts, strict=True)) / it_total
    assert total.value == pytest.approx(weighted, rel=1e-9)


@settings(max_examples=100, deadline=None)
@given(st.floats(min_value=1e-3, max_value=1e9), st.floats(min_value=0, max_value=1e9))
def test_pue_at_least_one_when_facility_at_least_it(it: float, extra: float) -> None:
    k = pue(
        Measured(it + extra, 1),
        Measured(it, 1),
        category=1,
        window_seconds=60,
        min_coverage=MIN_COV,
    )
    assert k.value is not None and k.value >= 1.0


@settings(max_examples=100, deadline=None)
@given(
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0, max_value=1),
    st.floats(min_value=0.01, max_value=1),
)
def test_coverage_below_threshold_is_incomplete_and_none_is_withheld(
    cov_dc: float, cov_it: float, threshold: float
) -> None:
    k = pue(
        Measured(2, cov_dc),
        Measured(1, cov_it),
        category=2,
        window_seconds=60,
        min_coverage=threshold,
    )
    if min(cov_dc, cov_it) == 0:
        assert k.value is None and k.withheld and k.quality is Quality.WITHHELD
    elif min(cov_dc, cov_it) < threshold:
        assert k.value == 2 and k.quality is Quality.INCOMPLETE
    else:
        assert k.value == 2 and k.quality is Quality.OK
    assert k.coverage == {"E_DC": cov_dc, "E_IT": cov_it}


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 53))  # 54 s of 60 would be the 90 % threshold
def test_site_kpis_never_call_ok_what_an_under_covered_meter_feeds(covered_s: int) -> None:
    site = make_site(BASIC)
    energies = {"inc": series(100, covered=float(covered_s)), "pdu": series(50), "crac": series(10)}
    out = site_kpis(site, energies, Window(0, 60), factors_with(cfe=0.5), MIN_COV)
    # Ratios: no interval where the facility meter is covered, so nothing to compute.
    for name in ("pue", "ref"):
        assert out.kpis[name].value is None and out.kpis[name].quality is Quality.WITHHELD, name
    # Totals keep their own coverage: shown (when there is data), never ok.
    for name in ("scope2_location", "scope2_market", "cfe"):
        assert out.kpis[name].quality is not Quality.OK, name
    assert out.kpis["ppue:h1"].value == pytest.approx(1.2)


def test_series_on_another_interval_grid_are_refused_not_misread() -> None:
    # Summing per-interval lists of different grids would silently truncate or misplace
    # energy; the report's series and the KPI interval must agree.
    site = make_site(
        [
            {"name": "inc", "role": "facility"},
            {"name": "ups", "role": "it", "point": "pdu_output"},
            {"name": "pv", "role": "renewable_onsite"},
        ]
    )
    factors = load_factors()
    w = Window(0, 7200)
    minute = {"inc": series(*[100.0] * 120), "ups": series(*[50.0] * 120)}
    with pytest.raises(KPIError, match="pv: its series has 300 s intervals"):
        site_kpis(site, {**minute, "pv": series(*[10.0] * 24, step=300)}, w, factors, 0.0)
    with pytest.raises(KPIError, match="inc: its series has 60 s intervals"):
        site_kpis(site, minute, w, factors, 0.0, interval_seconds=300)
    with pytest.raises(KPIError, match="must be hourly"):
        site_kpis(site, minute, w, factors, 0.0, ppa_hourly_wh=series(*[1.0] * 120))
