"""Live rolling-window KPIs: same numbers as the batch path, bounded memory, counters."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from greendc._errors import ConfigError
from greendc.config import Settings
from greendc.energy import interval_series
from greendc.factors import load_factors
from greendc.kpi import Window, site_kpis
from greendc.model import Reading
from greendc.quality import Quality
from greendc.rolling import LiveKPIs
from greendc.steps import counter_rules
from tests.helpers import site_config
from tests.support.builders import settings_from

T0 = 1_764_374_400  # 2025-11-29T00:00:00Z, on every interval grid used here


_METERS = [
    {"name": "inc", "role": "facility"},
    {"name": "office", "role": "facility", "sign": -1},
    {"name": "ups", "role": "it", "point": "ups_output"},
    {"name": "pv", "role": "renewable_onsite"},
    {"name": "water", "role": "water"},
]


def make_settings(
    windows: list[int] | None = None,
    zone: str = "SG",
    *,
    meters: list[dict[str, Any]] | None = None,
    min_coverage: float = 0.9,
) -> Settings:
    data: dict[str, Any] = {
        "kpi": {
            "interval_seconds": 60,
            "max_gap_seconds": 300,
            "min_coverage": min_coverage,
            "windows_seconds": windows or [300, 3600],
        },
        "sites": [site_config("s1", grid_zone=zone, meters=meters or _METERS)],
    }
    return settings_from(data)


def reading(meter: str, t_s: float, **fields: float) -> Reading:
    return Reading("s1", meter, "", round(t_s * 1000), dict(fields))


def feed_constant(live: LiveKPIs, meter: str, watts: float, start_s: int, end_s: int) -> None:
    for t in range(start_s, end_s + 1, 10):
        live.add(reading(meter, t, power_w=watts))


def test_live_pue_and_renewable_share_match_hand_computation() -> None:
    live = LiveKPIs(make_settings())
    # 10 minutes of constant power: facility 1600 W minus office 100 W, IT 1000 W, PV 300 W.
    for meter, watts in (("inc", 1600.0), ("office", 100.0), ("ups", 1000.0), ("pv", 300.0)):
        feed_constant(live, meter, watts, T0, T0 + 600)
    for i, t in enumerate(range(T0, T0 + 601, 60)):
        live.add(reading("water", t, water_l=1000.0 + 2.0 * i))
    snap = live.snapshot(T0 + 630.5)
    assert snap.end_s == T0 + 600
    five = snap.kpis["s1"][300].kpis
    assert five["pue"].value == pytest.approx(1500 / 1000)
    assert five["pue"].label == "PUE1 (interim)"
    assert five["ref"].value == pytest.approx(300 / 1500)
    assert five["renewable_share"].value == pytest.approx(0.2)
    # 2 L per minute over 1000 W x 5 min = 83.3 Wh of IT energy.
    assert five["wue"].value == pytest.approx(10 / (1000 * 300 / 3600 / 1000))
    # The hour is covered for 10 minutes: PUE over those, incomplete, with its coverage.
    hour = snap.kpis["s1"][3600].kpis["pue"]
    assert hour.value == pytest.approx(1.5) and hour.quality is Quality.INCOMPLETE
    assert hour.covered == pytest.approx(600 / 3600)
    assert snap.energy_totals_wh[("s1", "facility")] == pytest.approx(1600 * 600 / 3600)
    assert snap.subtracted_energy_wh[("s1", "facility")] == pytest.approx(100 * 600 / 3600)
    assert snap.water_totals_l["s1"] == pytest.approx(20.0)


@st.composite
def meter_samples(draw: st.DrawFn) -> list[tuple[float, float | None, float | None]]:
    n = draw(st.integers(2, 30))
    out: list[tuple[float, float | None, float | None]] = []
    t, c = float(T0), draw(st.floats(0, 1e6))
    for _ in range(n):
        t += draw(st.sampled_from([5.0, 10.0, 30.0, 61.5, 200.0, 400.0]))
        kind = draw(st.sampled_from(["counter", "power", "both", "reset"]))
        c = draw(st.floats(0, 10)) if kind == "reset" else c + draw(st.floats(0, 100))
        p = draw(st.floats(0, 5000))
        out.append((t, None if kind == "power" else c, None if kind == "counter" else p))
    return out


@settings(max_examples=25, deadline=None)
@given(meter_samples(), meter_samples())
def test_incremental_live_equals_batch_energy_and_kpis(
    fac: list[tuple[float, float | None, float | None]],
    it: list[tuple[float, float | None, float | None]],
) -> None:
    s = make_settings(windows=[3600 * 4])
    live = LiveKPIs(s)
    site = s.sites[0]
    batch = {}
    last = 0.0
    for meter, samples in (("inc", fac), ("ups", it)):
        for t, c, p in samples:
            fields = {k: v for k, v in (("energy_wh", c), ("power_w", p)) if v is not None}
            live.add(reading(meter, t, **fields))
            last = max(last, t)
        ts, cs, ps = zip(*samples, strict=True)
        m = site.meter(meter)
        assert m is not None
        rules = counter_rules(site, m, s.kpi)
        batch[meter] = interval_series(
            ts,
            cs,
            ps,
            interval_seconds=60,
            max_gap_seconds=300,
            rollover_wh=rules.rollover,
            max_power_w=rules.max_power_w,
            power_factor=rules.power_factor,
            floor_w=rules.floor_w,
            start_s=T0,
            end_s=T0 + 3600 * 4,
        )
    snap = live.snapshot(T0 + 3600 * 4)
    expected = site_kpis(site, batch, Window(T0, T0 + 3600 * 4), load_factors(), s.kpi.min_coverage)
    got = snap.kpis["s1"][3600 * 4]
    for name in ("pue", "scope2_location"):
        assert got.kpis[name].quality is expected.kpis[name].quality
        if expected.kpis[name].value is None:
            assert got.kpis[name].value is None
        else:
            assert got.kpis[name].value == pytest.approx(expected.kpis[name].value, rel=1e-9)
    for name in ("E_DC", "E_IT", "E_grid"):
        want, have = expected.inputs[name], got.inputs[name]
        assert have.value == pytest.approx(want.value, rel=1e-9, abs=1e-6), name
        assert have.coverage == pytest.approx(want.coverage, rel=1e-9, abs=1e-9), name
        assert have.bridged == pytest.approx(want.bridged, rel=1e-9, abs=1e-6), name
        assert have.meters == want.meters, name


def test_memory_is_bounded_to_the_longest_window() -> None:
    live = LiveKPIs(make_settings(windows=[300, 3600]))
    feed_constant(live, "ups", 600.0, T0, T0 + 7200)
    snap = live.snapshot(T0 + 7200)
    hour = snap.kpis["s1"][3600].inputs["E_IT"]
    # The last hour holds exactly one hour of energy, fully covered; the hour before it is
    # gone from the ring (66 intervals: the longest window, the current one, and 5 minutes
    # for a meter whose clock runs ahead, validation.max_future_seconds).
    assert hour.value == pytest.approx(600.0)
    assert hour.coverage == pytest.approx(1.0)
    assert {g.energy.capacity for gs in live._groups.values() for g in gs.values()} == {66}
    assert snap.energy_totals_wh[("s1", "it")] == pytest.approx(1200.0)
    # One covered run, however long the meter has been reporting.
    assert live._meters[("s1", "ups")].runs == [[T0, T0 + 7200]]


def test_meters_of_one_role_zone_and_sign_share_one_ring() -> None:
    meters = [
        {"name": "inc", "role": "facility"},
        {"name": "crah1", "role": "cooling", "zone": "hall1"},
    ] + [
        {
            "name": f"rack{i}",
            "role": "it",
            "point": "pdu_output",
            "zone": "hall1" if i % 2 else "hall2",
        }
        for i in range(200)
    ]
    s = settings_from(
        {
            "kpi": {"windows_seconds": [300, 3600]},
            "sites": [
                {
                    "name": "s1",
                    "grid_zone": "SG",
                    "installed_it_kw": 100,
                    "pue_category": 2,
                    "meters": meters,
                }
            ],
        }
    )
    live = LiveKPIs(s)
    # facility, cooling hall1, IT hall1, IT hall2: not a ring for each of 202 meters
    assert len(live._groups["s1"]) == 4
    for t in range(T0, T0 + 601, 30):
        live.add(reading("inc", t, power_w=30_000.0))
        live.add(reading("crah1", t, power_w=1_000.0))
        for i in range(200):
            live.add(reading(f"rack{i}", t, power_w=100.0 + i))
    k = live.snapshot(T0 + 600).kpis["s1"][300]
    it_w = sum(100.0 + i for i in range(200))
    assert k.inputs["E_IT"].value == pytest.approx(it_w * 300 / 3600)
    assert k.inputs["E_IT"].meters == 200
    assert k.kpis["pue"].value == pytest.approx(30_000.0 / it_w)
    hall1 = sum(100.0 + i for i in range(200) if i % 2)
    assert k.kpis["ppue:hall1"].value == pytest.approx((hall1 + 1_000.0) / hall1)
    assert k.kpis["ppue:hall1"].zone == "hall1" and k.kpis["pue"].zone is None


def test_one_silent_meter_lowers_its_role_coverage_even_when_the_others_report() -> None:
    live = LiveKPIs(make_settings())
    for meter, watts in (("inc", 1600.0), ("office", 100.0), ("ups", 1000.0)):
        feed_constant(live, meter, watts, T0, T0 + 600)
    feed_constant(live, "office", 100.0, T0 + 600, T0 + 600)  # nothing new
    live.add(reading("inc", T0 + 900, power_w=1600.0))  # facility goes on...
    live.add(reading("ups", T0 + 900, power_w=1000.0))
    k = live.snapshot(T0 + 900).kpis["s1"][300]
    # ...but the office sub-meter stopped at T0 + 600: E_DC covers 0 of its last 5 minutes.
    assert k.inputs["E_DC"].coverage == pytest.approx(0.0)
    assert k.kpis["pue"].value is None
    assert k.kpis["pue"].quality is Quality.WITHHELD


def test_totals_are_monotonic_and_stale_samples_are_ignored() -> None:
    live = LiveKPIs(make_settings())
    live.add(reading("pv", T0, power_w=1000.0))
    live.add(reading("pv", T0 + 60, power_w=-1000.0))  # export: a negative step
    live.add(reading("pv", T0 + 120, power_w=-1000.0))
    live.add(reading("pv", T0 + 30, power_w=5.0))  # older than the last: ignored
    snap = live.snapshot(T0 + 180)
    assert snap.energy_totals_wh[("s1", "renewable_onsite")] == pytest.approx(0.0)
    assert snap.ignored_samples == 1


def test_unknown_meters_are_in_no_kpi() -> None:
    live = LiveKPIs(make_settings())
    live.add(reading("ups", T0, power_w=1000.0))
    live.add(reading("ups", T0 + 60, power_w=1000.0))
    before = live.snapshot(T0 + 60)
    live.add(Reading("s1", "mystery", "unknown", T0 * 1000, {"power_w": 42.0}))
    live.add(Reading("s1", "mystery", "unknown", (T0 + 60) * 1000, {"power_w": 42.0}))
    live.add(Reading("other", "m", "unknown", T0 * 1000, {"energy_wh": 1.0}))
    snap = live.snapshot(T0 + 60)
    assert snap.energy_totals_wh == before.energy_totals_wh
    assert snap.energy_totals_wh[("s1", "it")] == pytest.approx(1000 / 60)
    assert set(snap.kpis) == {"s1"}


def test_bad_settings_fail_at_construction() -> None:
    # Windows of whole intervals are the config schema's rule (check-config refuses them).
    with pytest.raises(ConfigError, match=r"kpi\.windows_seconds: 90 is not a multiple"):
        make_settings(windows=[90])
    with pytest.raises(ConfigError, match=r"sites\[0\]\.grid_zone: 'ZZ'"):
        LiveKPIs(make_settings(zone="ZZ"))


def _two_it_meters(windows: list[int]) -> Settings:
    meters = [
        {"name": "inc", "role": "facility"},
        {"name": "ups1", "role": "it", "point": "ups_output"},
        {"name": "ups2", "role": "it", "point": "ups_output"},
    ]
    return make_settings(windows, meters=meters, min_coverage=0.0)


@pytest.mark.parametrize(
    ("windows", "ups2_offset_s"),
    [
        ([300], -360),  # ups2's gateway replays a backlog six minutes behind
        ([300, 86400], -86520),  # ...or a day and two minutes behind
        ([300], 180),  # ups2's clock runs three minutes ahead (within max_future_seconds)
    ],
)
def test_a_meter_behind_or_ahead_of_its_group_leaves_the_others_exact(
    windows: list[int], ups2_offset_s: int
) -> None:
    """Meters of one role share a ring; one out of step must not wipe or shift the rest."""
    s = _two_it_meters(windows)
    live = LiveKPIs(s)
    samples: dict[str, list[tuple[int, float]]] = {"inc": [], "ups1": [], "ups2": []}
    for t in range(T0, T0 + 601, 10):
        for meter, ts, watts in (
            ("inc", t, 2000.0),
            ("ups1", t, 1000.0),
            ("ups2", t + ups2_offset_s, 500.0),
        ):
            live.add(reading(meter, ts, power_w=watts))
            samples[meter].append((ts, watts))
    end = T0 + 600
    batch = {
        m: interval_series(
            [t for t, _ in v],
            None,
            [w for _, w in v],
            interval_seconds=60,
            max_gap_seconds=300,
            start_s=end - 300,
            end_s=end,
        )
        for m, v in samples.items()
    }
    want = site_kpis(s.sites[0], batch, Window(end - 300, end), load_factors(), 0.0)
    got = live.snapshot(end).kpis["s1"][300]
    for name in ("E_IT", "E_DC", "pue.E_IT", "pue.E_DC"):
        assert got.inputs[name].value == pytest.approx(want.inputs[name].value, rel=1e-9)
        assert got.inputs[name].coverage == pytest.approx(want.inputs[name].coverage)
    # A meter out of step leaves no interval where all IT meters are covered: PUE withheld.
    assert got.kpis["pue"].quality is want.kpis["pue"].quality
    if want.kpis["pue"].value is None:
        assert got.kpis["pue"].value is None
    else:
        assert got.kpis["pue"].value == pytest.approx(want.kpis["pue"].value, rel=1e-9)


def test_live_counters_drop_spikes_survive_swaps_roll_over_and_bridge_gaps() -> None:
    # 100 Wh a minute on each meter (6 kW, under 3 x the site's installed IT power).
    meters = [
        {"name": "inc", "role": "facility", "register_bits": 32},
        {"name": "ups", "role": "it", "point": "ups_output", "max_power_w": 10_000},
    ]
    live = LiveKPIs(make_settings(windows=[3600], meters=meters, min_coverage=0.0))
    top = 2.0**32
    inc = [top - 250, top - 150, top - 50, 50, 150, 250, 350, 450, 550, 650, 750]  # wraps once
    ups = [0, 100, 200, 1e9, 400, 500, 4_000_000, 12, 112, 212, 312]  # spike, then a swap
    for i, (c_inc, c_ups) in enumerate(zip(inc, ups, strict=True)):
        live.add(reading("inc", T0 + 60 * i, energy_wh=c_inc))
        live.add(reading("ups", T0 + 60 * i, energy_wh=c_ups))
    # Then both silent for 20 minutes; the counters say 2,000 Wh more when they return.
    live.add(reading("inc", T0 + 60 * 30, energy_wh=2750))
    live.add(reading("ups", T0 + 60 * 30, energy_wh=2312))
    live.add(reading("ups", T0 + 60 * 31, energy_wh=2412))  # decides nothing: plain step
    snap = live.snapshot(T0 + 60 * 31)
    # Facility: 10 minutes x 100 Wh with a rollover, and the 2,000 Wh bridged across the gap.
    assert snap.energy_totals_wh[("s1", "facility")] == pytest.approx(1000 + 2000)
    # IT: the spike is one bad reading (0 -> 500 all counts); the jump to 4,000,000 and the
    # swap to 12 lose their two steps; 12 -> 312 counts, the gap is bridged, one step more.
    assert snap.energy_totals_wh[("s1", "it")] == pytest.approx(500 + 300 + 2000 + 100)
    events = snap.counter_events
    assert events[("s1", "inc", "rollover")] == 1
    assert events[("s1", "inc", "bridged")] == 1
    assert events[("s1", "ups", "spike")] == 1
    assert events[("s1", "ups", "jump")] == 1
    assert events[("s1", "ups", "reset")] == 1
    assert events[("s1", "ups", "bridged")] == 1
    k = snap.kpis["s1"][3600]
    assert k.inputs["E_DC"].bridged == pytest.approx(2000.0)
    assert k.inputs["E_DC"].shares.bridged == pytest.approx(20 * 60 / 3600)
