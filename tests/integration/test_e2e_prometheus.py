"""End to end: Mosquitto -> collector -> /metrics -> a real Prometheus with the generated rules.

(a) The recording-rule PUE over the energy counters equals the collector's own live PUE and
    the hand-computed figure. Every meter draws a constant power, so any window of either
    side sees ΔE_facility / ΔE_IT = P_facility / P_IT, even though Prometheus' 15 minutes
    (of which it holds a few seconds) and the collector's completed-interval window do not
    line up.
(b) A meter that stops publishing disappears from /metrics after its expiry, and
    Prometheus marks it stale, while a meter that keeps publishing stays.
(c) A flood of unique meter topics is held at validation.max_meters: the refused ones are
    counted exactly, the tracked meters stay at the cap, and configured meters still get in.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from greendc.exporters.rules import fleet_pue_record, pue_record, write_rules
from tests import helpers
from tests.helpers import make_settings, site_config, wait_until
from tests.integration.e2e_support import Ticker, batch, publisher, running_collector, scrape
from tests.servers import Mosquitto, Prometheus, PrometheusFactory

pytestmark = pytest.mark.integration

# Constant power per meter, watts. sg1: IT = 40 + 60 kW; jhr1: IT = 120 kW.
POWER_W: dict[str, dict[str, float]] = {
    "sg1": {"incomer": 137_500.0, "ups-1": 40_000.0, "ups-2": 60_000.0, "chiller": 30_000.0},
    "jhr1": {"incomer": 150_000.0, "pdu-a": 120_000.0},
}
FACILITY = {"sg1": ("incomer",), "jhr1": ("incomer",)}
IT = {"sg1": ("ups-1", "ups-2"), "jhr1": ("pdu-a",)}
SITES: list[dict[str, Any]] = [
    site_config(
        "sg1",
        timezone="Asia/Singapore",
        installed_it_kw=200,
        meters=[
            {"name": "incomer", "role": "facility"},
            {"name": "ups-1", "role": "it", "point": "ups_output"},
            {"name": "ups-2", "role": "it", "point": "ups_output"},
            {"name": "chiller", "role": "cooling"},
            # Only the stale-meter test publishes it; its short expiry is what it tests.
            {"name": "probe", "role": "other_overhead", "expiry_seconds": 2},
        ],
    ),
    helpers.SITES[1],  # jhr1, as in every other test
]
CONFIGURED_METERS = sum(len(s["meters"]) for s in SITES)
HISTORY_SECONDS = 1200  # > the 15 min KPI window, so the collector's PUE is not withheld
HISTORY_STEP_SECONDS = 30
LIVE_STEP_SECONDS = 0.5
PROM_DEADLINE_SECONDS = 30.0
IT_ENERGY = 'greendc_site_energy_joules_total{role="it"}'


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


def _one(result: list[dict[str, Any]]) -> float | None:
    return float(result[0]["value"][1]) if len(result) == 1 else None


def _wait_value(prom: Prometheus, query: str) -> float:
    """The single value of ``query`` once Prometheus has one (rules need a few evaluations)."""
    value = _one(prom.wait_for(query, lambda r: _one(r) is not None, PROM_DEADLINE_SECONDS))
    assert value is not None
    return value


def _counter_messages(prefix: str, ts: float, origin_s: float) -> list[tuple[str, Any]]:
    """Every meter of every site at ``ts``: energy = P x (ts - origin), one batch per site."""
    msgs = []
    for site, meters in POWER_W.items():
        fields = {
            m: {"power_w": p, "energy_wh": p * (ts - origin_s) / 3600.0} for m, p in meters.items()
        }
        msgs.append(batch(prefix, site, ts, fields))
    return msgs


def test_recording_rule_pue_equals_collector_pue(
    mosquitto: Mosquitto,
    mqtt_topic_prefix: str,
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,
) -> None:
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        sites=SITES,
        kpi={"interval_seconds": 60, "windows_seconds": [900]},
    )
    expected = {
        site: sum(POWER_W[site][m] for m in FACILITY[site])
        / sum(POWER_W[site][m] for m in IT[site])
        for site in POWER_W
    }
    assert expected == {"sg1": 1.375, "jhr1": 1.25}  # the loads are chosen for hand computation
    fleet = sum(POWER_W[s][m] for s in POWER_W for m in FACILITY[s]) / sum(
        POWER_W[s][m] for s in POWER_W for m in IT[s]
    )
    # ΣE/ΣE over the fleet is not the mean of the site ratios: the rule must not average.
    assert not math.isclose(fleet, sum(expected.values()) / len(expected), rel_tol=1e-6)
    rule_files = write_rules(settings, tmp_path / "rules")
    now = time.time()
    origin_s = math.floor(now / 60) * 60 - HISTORY_SECONDS
    history = [
        msg
        for i in range(HISTORY_SECONDS // HISTORY_STEP_SECONDS)
        for msg in _counter_messages(
            mqtt_topic_prefix, origin_s + i * HISTORY_STEP_SECONDS, origin_s
        )
    ]
    with running_collector(settings) as rc, publisher(mosquitto) as pub:
        # Started first: its first scrape takes seconds, which the history publish overlaps.
        prom = prometheus_factory([rc.target], rule_files=rule_files, interval_seconds=1.0)
        pub.publish(history)
        with publisher(mosquitto) as live_pub:

            def tick() -> None:
                live_pub.publish(_counter_messages(mqtt_topic_prefix, time.time(), origin_s))

            with Ticker(tick, LIVE_STEP_SECONDS, "e2e-live-counters"):
                recorded = {
                    s: _wait_value(prom, f'{pue_record("15m")}{{site="{s}"}}') for s in expected
                }
                fleet_recorded = _wait_value(prom, fleet_pue_record("15m"))
                own_in_prom = {
                    s: _wait_value(prom, f'greendc_site_pue_ratio{{site="{s}", window="15m"}}')
                    for s in expected
                }
                increases = _values(prom.query(f"sum by (site) (increase({IT_ENERGY}[15m]))"))
                snap = rc.agent.snapshot()
    own = {s.site: s.kpis[900]["pue"] for s in snap.sites}
    for site, want in expected.items():
        assert own[site].value is not None, f"{site}: the collector withheld its PUE"
        assert own[site].coverage >= settings.kpi.min_coverage
        assert own[site].value == pytest.approx(want, rel=1e-9)
        assert recorded[site] == pytest.approx(own[site].value, rel=1e-9)
        assert own_in_prom[site] == pytest.approx(own[site].value, rel=1e-9)
    assert fleet_recorded == pytest.approx(fleet, rel=1e-9)
    # The rule had growing counters to work on (its "> 0" guard drops a flat IT counter).
    assert len(increases) == 2 and all(v > 0 for v in increases)


def test_stale_meter_disappears_from_metrics_and_prometheus(
    mosquitto: Mosquitto,
    mqtt_topic_prefix: str,
    tmp_path: Path,
    prometheus_factory: PrometheusFactory,
) -> None:
    settings = make_settings(mosquitto.url, mqtt_topic_prefix, tmp_path, sites=SITES)
    sg1 = settings.site("sg1")
    probe = None if sg1 is None else sg1.meter("probe")
    assert probe is not None and probe.expiry_seconds == 2
    stale_q = 'greendc_meter_power_watts{site="sg1", meter="probe"}'
    kept_q = 'greendc_meter_power_watts{site="sg1", meter="incomer"}'
    feeding = {"probe": True}

    def meters_in(url: str) -> set[str]:
        return {s.labels["meter"] for s in scrape(url).get("greendc_meter_power_watts", [])}

    with running_collector(settings) as rc, publisher(mosquitto) as pub:
        prom = prometheus_factory([rc.target], interval_seconds=1.0)

        def tick() -> None:
            ts = time.time()
            msgs: list[tuple[str, Any]] = [
                (f"{mqtt_topic_prefix}/greendc/sg1/incomer", {"ts": ts, "power_w": 1000.0})
            ]
            if feeding["probe"]:
                msgs.append((f"{mqtt_topic_prefix}/greendc/sg1/probe", {"ts": ts, "power_w": 42.0}))
            pub.publish(msgs)

        with Ticker(tick, 0.25, "e2e-stale-feed") as ticker:
            prom.wait_for(stale_q, lambda r: _values(r) == [42.0], PROM_DEADLINE_SECONDS)
            assert meters_in(rc.exporter.url) >= {"incomer", "probe"}
            feeding["probe"] = False
            stopped_at_tick = ticker.ticks
            assert wait_until(lambda: "probe" not in meters_in(rc.exporter.url), 10.0), (
                "the stale probe meter is still exported"
            )
            # Prometheus writes a staleness marker when a series leaves a scrape, so an
            # instant query stops returning it at the next scrape, not after 5 minutes.
            prom.wait_for(stale_q, lambda r: r == [], deadline_seconds=10.0)
            # The incomer kept publishing all along and is still there, in both places.
            assert ticker.ticks > stopped_at_tick
            assert "incomer" in meters_in(rc.exporter.url)
            assert _values(prom.query(kept_q)) == [1000.0]


FLOOD = 3000
MAX_METERS = 50


def test_series_cap_holds_under_a_flood_of_unique_topics(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        sites=SITES,
        validation={"unknown_meters": "accept", "max_meters": MAX_METERS},
    )
    # Configured meters count against the cap whether or not they have published yet.
    room = MAX_METERS - CONFIGURED_METERS
    assert 0 < room < FLOOD
    flood = [
        (f"{mqtt_topic_prefix}/greendc/sg1/flood-{i:05d}", {"power_w": float(i)})
        for i in range(FLOOD)
    ]
    with running_collector(settings) as rc, publisher(mosquitto) as pub:
        agent, url = rc.agent, rc.exporter.url
        # One publisher on one connection: the broker keeps the order, so exactly the
        # first `room` unknown meters are admitted.
        pub.publish(flood)
        assert wait_until(lambda: agent.stats.messages_received == FLOOD), agent.stats
        m = scrape(url)
        power = m.get("greendc_meter_power_watts", [])
        assert len(power) == room <= MAX_METERS
        assert {s.labels["meter"] for s in power} == {f"flood-{i:05d}" for i in range(room)}
        refused = FLOOD - room
        assert m["greendc_agent_series_refused_total"][0].value == refused
        by_reason = {s.labels["reason"]: s.value for s in m["greendc_agent_rejections_total"]}
        assert by_reason["series_cap"] == refused
        assert sum(by_reason.values()) == refused  # nothing else was rejected
        assert m["greendc_agent_meters_tracked"][0].value == room
        assert m["greendc_agent_readings_accepted_total"][0].value == room

        # A meter already admitted still gets in; a configured one too, although the cap
        # is full; one more new meter is refused and counted.
        pub.publish(
            [
                (f"{mqtt_topic_prefix}/greendc/sg1/flood-00000", {"power_w": 7.0}),
                (f"{mqtt_topic_prefix}/greendc/jhr1/pdu-a", {"power_w": 1234.5}),
                (f"{mqtt_topic_prefix}/greendc/sg1/one-too-many", {"power_w": 1.0}),
            ]
        )
        assert wait_until(lambda: agent.stats.messages_received == FLOOD + 3), agent.stats
        m = scrape(url)
        power_by_meter = {
            (s.labels["site"], s.labels["meter"]): s.value for s in m["greendc_meter_power_watts"]
        }
        assert power_by_meter[("jhr1", "pdu-a")] == 1234.5
        assert power_by_meter[("sg1", "flood-00000")] == 7.0
        assert ("sg1", "one-too-many") not in power_by_meter
        assert len(power_by_meter) == room + 1 <= MAX_METERS
        assert m["greendc_agent_series_refused_total"][0].value == refused + 1
        assert m["greendc_agent_meters_tracked"][0].value == room + 1
