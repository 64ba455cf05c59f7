"""The simulator without a broker: physics, counters, styles, faults, determinism."""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from greendc import simulator
from greendc._errors import ConfigError
from greendc.config import Settings, TopicMapping, load_config
from greendc.model import UNITS, Quantity, Role
from greendc.simulator import (
    FaultRates,
    SimOptions,
    parse_duration,
    parse_faults,
    parse_speed,
    samples,
)
from greendc.simulator.faults import FaultInjector
from greendc.simulator.model import PUE_RANGE, climate_profile, local_time, next_generator_test_s
from greendc.simulator.styles import Encoder

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "examples"
JAN_5_2026 = datetime(2026, 1, 5, tzinfo=UTC).timestamp()  # a Monday
JUL_6_2026 = datetime(2026, 7, 6, tzinfo=UTC).timestamp()  # a Monday


@pytest.fixture(scope="module")
def four() -> Settings:
    return load_config(EXAMPLES / "four-climates.yaml", env={})


def _series(
    settings: Settings, start_s: float, duration_s: float, step_s: float, seed: int = 0
) -> dict[tuple[str, str], list[tuple[float, dict[str, float]]]]:
    out: dict[tuple[str, str], list[tuple[float, dict[str, float]]]] = defaultdict(list)
    for ts, site, meter, fields in samples(settings, start_s, duration_s, step_s, seed):
        out[(site, meter)].append((ts, fields))
    return out


def _pue(settings: Settings, series: dict, site_name: str) -> float:
    """ΣE_facility / ΣE_IT from the published counters, signs applied."""
    site = settings.site(site_name)
    assert site is not None

    def delta(name: str) -> float:
        rows = series[(site_name, name)]
        return rows[-1][1]["energy_wh"] - rows[0][1]["energy_wh"]

    facility = sum(m.sign * delta(m.name) for m in site.meters if m.role is Role.FACILITY)
    it = sum(m.sign * delta(m.name) for m in site.meters if m.role is Role.IT)
    return facility / it


@pytest.mark.parametrize("name", ["four-climates", "gateway", "plain-numbers", "devices"])
def test_example_configs_load(name: str) -> None:
    settings = load_config(EXAMPLES / f"{name}.yaml", env={})
    assert settings.sites
    assert settings.effective_sinks == ["embedded"]


def test_four_climates_has_the_four_sites_and_zones(four: Settings) -> None:
    zones = {s.name: s.grid_zone for s in four.sites}
    assert sorted(zones.values()) == ["DE", "ID", "MY-PEN", "SG"]
    assert {climate_profile(s).name for s in four.sites} == {"tropical", "temperate"}


def test_same_seed_same_readings_other_seed_differs(four: Settings) -> None:
    a = list(samples(four, JAN_5_2026, 3600, 60, seed=7))
    b = list(samples(four, JAN_5_2026, 3600, 60, seed=7))
    c = list(samples(four, JAN_5_2026, 3600, 60, seed=8))
    assert a == b
    assert a != c
    assert len(a) == 60 * sum(len(s.meters) for s in four.sites)


def test_every_meter_publishes_its_quantities(four: Settings) -> None:
    first = {(site, meter): f for _, site, meter, f in samples(four, JAN_5_2026, 60, 60)}
    for site in four.sites:
        for m in site.meters:
            fields = first[(site.name, m.name)]
            if m.role is Role.WATER:
                assert set(fields) == {"water_l"}
            else:
                assert {"power_w", "energy_wh"} <= set(fields)
                assert fields["power_w"] >= 0


def test_energy_counters_follow_power(four: Settings) -> None:
    series = _series(four, JAN_5_2026, 6 * 3600, 60)
    for (site, meter), rows in series.items():
        for (t0, f0), (t1, f1) in itertools.pairwise(rows):
            if "energy_wh" not in f0:
                assert f1["water_l"] >= f0["water_l"], (site, meter)
                continue
            expected_wh = (f0["power_w"] + f1["power_w"]) / 2 * (t1 - t0) / 3600
            got_wh = f1["energy_wh"] - f0["energy_wh"]
            assert got_wh == pytest.approx(expected_wh, abs=0.01), (site, meter, t1)


@pytest.mark.parametrize(
    ("start_s", "duration_s"),
    [(JAN_5_2026, 86400.0), (JAN_5_2026, 7 * 86400.0), (JUL_6_2026, 7 * 86400.0)],
)
def test_pue_per_climate_within_documented_range(
    four: Settings, start_s: float, duration_s: float
) -> None:
    series = _series(four, start_s, duration_s, 300)
    for site in four.sites:
        lo, hi = PUE_RANGE[climate_profile(site).name]
        pue = _pue(four, series, site.name)
        assert lo <= pue <= hi, (site.name, pue)


def test_temperate_pue_is_higher_in_summer_than_winter(four: Settings) -> None:
    winter = _pue(four, _series(four, JAN_5_2026, 7 * 86400, 600), "fra1")
    summer = _pue(four, _series(four, JUL_6_2026, 7 * 86400, 600), "fra1")
    assert summer > winter


def test_it_utilisation_plausible(four: Settings) -> None:
    series = _series(four, JAN_5_2026, 7 * 86400, 600)
    for site in four.sites:
        its = [m.name for m in site.meters if m.role is Role.IT]
        energy_wh = sum(
            series[(site.name, n)][-1][1]["energy_wh"] - series[(site.name, n)][0][1]["energy_wh"]
            for n in its
        )
        hours = (series[(site.name, its[0])][-1][0] - series[(site.name, its[0])][0][0]) / 3600
        utilisation = energy_wh / 1000 / hours / site.installed_it_kw
        assert 0.5 <= utilisation <= 0.8, (site.name, utilisation)


def test_solar_is_zero_at_night_and_positive_at_noon(four: Settings) -> None:
    series = _series(four, JAN_5_2026, 2 * 86400, 600)
    for site in four.sites:
        for m in site.meters:
            if m.role is not Role.RENEWABLE_ONSITE:
                continue
            night = [
                f["power_w"]
                for ts, f in series[(site.name, m.name)]
                if local_time(site, ts).hour in (0, 1, 2, 3, 4, 22, 23)
            ]
            noon = [
                f["power_w"]
                for ts, f in series[(site.name, m.name)]
                if 11 <= local_time(site, ts).hour <= 13
            ]
            assert night and all(p == 0 for p in night), (site.name, m.name)
            assert max(noon) > 0, (site.name, m.name)


def test_generator_test_visible_once_a_month(four: Settings) -> None:
    site = four.site("sg1")
    assert site is not None
    test_start = next_generator_test_s(site, JAN_5_2026)
    local = local_time(site, test_start)
    assert (local.weekday(), local.hour, local.minute) == (1, 10, 0)  # Tuesday 10:00
    assert local.day <= 7
    series = _series(four, test_start - 3600, 3 * 3600, 60)
    gen = series[("sg1", "genset-1")]
    running = [ts for ts, f in gen if f["power_w"] > 0]
    assert running[0] == test_start
    assert running[-1] < test_start + 1800 <= running[-1] + 60
    assert gen[-1][1]["energy_wh"] > gen[0][1]["energy_wh"]
    # On-load test: the grid supplies less while the generator runs.
    grid = dict(series[("sg1", "grid-main")])
    assert grid[test_start + 600]["power_w"] < grid[test_start - 600]["power_w"] * 0.7
    idle = [f["power_w"] for ts, f in gen if ts < test_start]
    assert idle and all(p == 0 for p in idle)


def test_sub_meter_is_inside_its_parent(four: Settings) -> None:
    series = _series(four, JAN_5_2026, 3600, 60)
    for (_, parent), (_, sub) in zip(
        series[("jhr1", "incomer-main")], series[("jhr1", "tenant-office")], strict=True
    ):
        assert 0 < sub["power_w"] < parent["power_w"]


# -- styles ------------------------------------------------------------------------------


def _one_step(settings: Settings, site: str) -> list[simulator.Sample]:
    rows = [
        simulator.Sample(ts, s, m, dict(f))
        for ts, s, m, f in samples(settings, JAN_5_2026, 60, 60)
        if s == site
    ]
    assert rows
    return rows


def _match(topic: str, pattern: str) -> dict[str, str] | None:
    t, p = topic.split("/"), pattern.split("/")
    if len(t) != len(p):
        return None
    names: dict[str, str] = {}
    for seg, pat in zip(t, p, strict=True):
        if pat.startswith("{"):
            names[pat[1:-1]] = seg
        elif pat != "+" and pat != seg:
            return None
    return names


def test_native_style_matches_the_native_mapping(four: Settings) -> None:
    rows = _one_step(four, "sg1")
    msgs = list(Encoder("native").encode(JAN_5_2026, "sg1", rows))
    assert len(msgs) == len(rows)
    for (topic, payload), s in zip(msgs, rows, strict=True):
        assert _match(topic, "greendc/{site}/{meter}") == {"site": "sg1", "meter": s.meter}
        assert json.loads(payload) == {"ts": JAN_5_2026, **s.fields}
    batch = list(Encoder("batch").encode(JAN_5_2026, "sg1", rows))
    assert [t for t, _ in batch] == ["greendc/sg1"]
    assert [r["meter"] for r in json.loads(batch[0][1])] == [s.meter for s in rows]


def _lookup(obj: Any, path: str) -> Any:
    for part in path.split("."):
        obj = obj[part]
    return obj


def test_gateway_style_decodes_with_the_gateway_example() -> None:
    settings = load_config(EXAMPLES / "gateway.yaml", env={})
    mapping: TopicMapping = settings.mappings[0]
    rows = _one_step(settings, "sg1")
    msgs = list(Encoder("gateway").encode(JAN_5_2026, "sg1", rows))
    assert len(msgs) == math.ceil(len(rows) / 8)
    decoded: dict[str, dict[str, float]] = {}
    for topic, payload in msgs:
        assert _match(topic, mapping.topic) == {"site": "sg1"}
        doc = json.loads(payload)
        for item in _lookup(doc, mapping.items_path):
            ts = datetime.fromisoformat(item[mapping.timestamp_path]).timestamp()
            assert ts == JAN_5_2026
            fields = {
                v.quantity.value: item[v.path] * UNITS[v.quantity][v.unit]
                for v in mapping.values
                if v.path in item
            }
            decoded[item[mapping.meter_path]] = fields
    for s in rows:
        for name, value in s.fields.items():
            assert decoded[s.meter][name] == pytest.approx(value, rel=1e-9), (s.meter, name)


def test_plain_style_decodes_with_the_plain_example() -> None:
    settings = load_config(EXAMPLES / "plain-numbers.yaml", env={})
    rows = _one_step(settings, "jhr1")
    msgs = list(Encoder("plain").encode(JAN_5_2026, "jhr1", rows))
    assert len(msgs) == sum(len(s.fields) for s in rows)
    by_meter = {s.meter: s.fields for s in rows}
    for topic, payload in msgs:
        hits = [(m, _match(topic, m.topic)) for m in settings.mappings]
        matched = [(m, names) for m, names in hits if names is not None]
        assert len(matched) == 1, topic
        mapping, names = matched[0]
        value = mapping.values[0]
        got = float(payload) * UNITS[value.quantity][value.unit]
        want = by_meter[names["meter"]][value.quantity.value]
        assert got == pytest.approx(want, rel=1e-9), topic


# -- faults ------------------------------------------------------------------------------


def _faulted(rates: FaultRates, n: int = 50) -> list[list[simulator.Sample]]:
    inj = FaultInjector(rates, seed=3)
    out = []
    for i in range(n):
        power = 1000.0 + i
        out.append(inj.apply(100.0 + 10 * i, "s", "m", {"power_w": power, "energy_wh": 5000.0 + i}))
    return out


def test_fault_dropout_drops() -> None:
    out = _faulted(FaultRates(dropout=1.0))
    assert all(batch == [] for batch in out)


def test_fault_spike_multiplies_power() -> None:
    out = _faulted(FaultRates(spike=1.0, spike_factor=50.0))
    assert out[3][0].fields["power_w"] == pytest.approx(1003.0 * 50)
    assert out[3][0].fields["energy_wh"] == 5003.0


def test_fault_stuck_repeats_values_while_time_moves() -> None:
    out = _faulted(FaultRates(stuck=0.2, stuck_samples=5))
    flat = [b[0] for b in out]
    repeats = [(a, b) for a, b in itertools.pairwise(flat) if a.fields == b.fields]
    assert repeats
    assert all(b.ts > a.ts for a, b in repeats)


def test_fault_counter_reset_drops_counter_and_keeps_counting() -> None:
    out = _faulted(FaultRates(counter_reset=0.1))
    energy = [float(b[0].fields["energy_wh"]) for b in out]  # type: ignore[arg-type]
    drops = [i for i in range(1, len(energy)) if energy[i] < energy[i - 1]]
    assert drops
    i = drops[0]
    assert energy[i] == 0.0
    assert energy[i + 1] > energy[i]


def test_fault_clock_skew_moves_timestamps() -> None:
    out = _faulted(FaultRates(clock_skew=1.0, skew_seconds=900.0))
    assert all(abs(b[0].ts - (100.0 + 10 * i)) == 900.0 for i, b in enumerate(out))


def test_fault_malformed_payloads() -> None:
    rows = _faulted(FaultRates(invalid_json=1.0))
    payloads = [p for b in rows for _, p in Encoder("native").encode(0.0, "s", b)]
    for p in payloads:
        with pytest.raises(json.JSONDecodeError):
            json.loads(p)
    nan = [p for b in _faulted(FaultRates(nan=1.0)) for _, p in Encoder("native").encode(0, "s", b)]
    for p in nan:
        with pytest.raises(ValueError, match="NaN"):
            json.loads(p, parse_constant=_refuse)
    strings = _faulted(FaultRates(string=1.0))
    assert all("n/a" in b[0].fields.values() for b in strings)
    unknown = _faulted(FaultRates(unknown_meter=1.0))
    assert all(len(b) == 2 and b[1].meter.startswith("ghost-") for b in unknown)
    plain = [p for b in rows for _, p in Encoder("plain").encode(0.0, "s", b)]
    for p in plain:
        with pytest.raises(ValueError):
            float(p)


def _refuse(token: str) -> float:
    raise ValueError(f"{token} is not JSON")


def test_faults_are_counted_and_deterministic() -> None:
    rates = parse_faults("all=0.05")
    a = FaultInjector(rates, seed=1)
    b = FaultInjector(rates, seed=1)
    for i in range(400):
        fields = {"power_w": 10.0, "energy_wh": float(i)}
        assert a.apply(float(i), "s", "m", fields) == b.apply(float(i), "s", "m", fields)
    assert a.counts == b.counts
    assert set(a.counts) == set(simulator.FAULT_KINDS)


def test_parse_faults_names_the_bad_item() -> None:
    assert parse_faults("dropout=0.01, spike=0.5").spike == 0.5
    with pytest.raises(ConfigError, match="dropuot"):
        parse_faults("dropuot=0.1")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        parse_faults("spike=2")


def test_parse_cli_values() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("90") == 90
    assert parse_speed("max") == 0.0
    assert parse_speed("60") == 60.0
    assert simulator.parse_start("2026-01-05T00:00:00Z") == JAN_5_2026
    assert simulator.parse_start("now") is None
    with pytest.raises(ConfigError, match="--speed"):
        parse_speed("fast")
    with pytest.raises(ConfigError, match="step_seconds"):
        SimOptions(step_seconds=0)


# -- run() with a recording publisher -----------------------------------------------------


class _Recorder:
    def __init__(self, stop_after: int | None = None, stop: threading.Event | None = None):
        self.messages: list[tuple[str, bytes]] = []
        self._stop_after = stop_after
        self._stop = stop

    def publish(self, topic: str, payload: bytes, stop: threading.Event) -> bool:
        self.messages.append((topic, payload))
        if self._stop is not None and len(self.messages) == self._stop_after:
            self._stop.set()
        return True

    def flush(self, timeout_seconds: float) -> int:
        return 0

    @property
    def acked(self) -> int:
        return len(self.messages)


def test_run_publishes_every_reading_with_simulated_timestamps(four: Settings) -> None:
    rec = _Recorder()
    opts = SimOptions(start_s=JAN_5_2026, duration_s=3600, step_seconds=60, speed=0)
    stats = simulator.run(four, opts, publisher=rec)
    meters = sum(len(s.meters) for s in four.sites)
    assert stats.messages == len(rec.messages) == 60 * meters
    assert stats.steps == 60
    assert stats.first_ts == JAN_5_2026
    assert stats.last_ts == JAN_5_2026 + 59 * 60
    stamps = {json.loads(p)["ts"] for _, p in rec.messages}
    assert stamps == {JAN_5_2026 + 60 * i for i in range(60)}
    expected = [
        (f"greendc/{site}/{meter}", {"ts": ts, **f})
        for ts, site, meter, f in samples(four, JAN_5_2026, 3600, 60)
    ]
    assert [(t, json.loads(p)) for t, p in rec.messages] == expected


def test_run_stops_when_asked(four: Settings) -> None:
    stop = threading.Event()
    rec = _Recorder(stop_after=25, stop=stop)
    opts = SimOptions(start_s=JAN_5_2026, duration_s=None, step_seconds=60, speed=0)
    stats = simulator.run(four, opts, stop, publisher=rec)
    assert stats.messages <= 25 + sum(len(s.meters) for s in four.sites)
    assert stats.messages == len(rec.messages)


def test_run_gateway_with_faults_counts_them(four: Settings) -> None:
    rec = _Recorder()
    opts = SimOptions(
        style="gateway",
        start_s=JAN_5_2026,
        duration_s=600,
        step_seconds=60,
        speed=0,
        faults=FaultRates(dropout=0.1, unknown_meter=0.1),
    )
    stats = simulator.run(four, opts, publisher=rec)
    points = [pt for _, p in rec.messages for pt in json.loads(p)["points"]]
    meters = sum(len(s.meters) for s in four.sites)
    assert len(points) == stats.readings
    assert stats.readings == 10 * meters - stats.faults["dropout"] + stats.faults["unknown_meter"]
    assert stats.faults["dropout"] > 0
    assert sum(1 for pt in points if pt["id"].startswith("ghost-")) == stats.faults["unknown_meter"]


def test_quantities_published_are_known() -> None:
    known = {q.value for q in Quantity}
    settings = load_config(EXAMPLES / "four-climates.yaml", env={})
    for _, _, _, fields in samples(settings, JAN_5_2026, 120, 60):
        assert set(fields) <= known


def test_public_names_are_pinned() -> None:
    assert set(simulator.__all__) == {
        "FAULT_KINDS",
        "STYLES",
        "Encoder",
        "FaultInjector",
        "FaultRates",
        "Fields",
        "MqttPublisher",
        "Publisher",
        "Sample",
        "SimOptions",
        "SimStats",
        "SimulatorError",
        "Style",
        "climate_profile",
        "parse_duration",
        "parse_faults",
        "parse_speed",
        "parse_start",
        "run",
        "samples",
    }
    assert all(hasattr(simulator, name) for name in simulator.__all__)


def test_a_paced_run_reports_its_real_rate_not_zero() -> None:
    # Four sites in real time: 16 messages over 40 s is 0.4 msg/s, not "0 msg/s".
    paced = simulator.SimStats(
        messages=16, readings=172, wall_seconds=40.0, first_ts=0.0, last_ts=30.0
    )
    assert "(0.40 msg/s)" in paced.summary()
    assert "covering 30 simulated seconds" in paced.summary()
    burst = simulator.SimStats(messages=720, readings=7740, wall_seconds=0.2, not_acked=3)
    assert "(3,600 msg/s); 3 not acknowledged" in burst.summary()
