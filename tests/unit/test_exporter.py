"""The /metrics collector: catalogue conformance, units, KPIs, staleness, the HTTP server."""

from __future__ import annotations

import gzip
import http.client
import socket
import threading
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from greendc import exporters
from greendc.catalogue import METRICS, REJECTION_REASONS
from greendc.config import MetricsSettings, Site
from greendc.exporters import SnapshotCollector, serve, window_label
from greendc.exporters.prometheus import THREAD_NAME, WH_TO_JOULES
from greendc.snapshot import (
    Health,
    Histogram,
    LiveKPI,
    MeterState,
    SinkHealth,
    SiteLive,
    Snapshot,
)
from tests.helpers import PUE_TARGETS, site_config
from tests.support.builders import settings_from

_HIST = Histogram(buckets=((0.01, 2), (0.1, 5), (1.0, 6)), count=7, sum=3.25)


def _sites() -> list[Site]:
    data = {
        "sites": [
            site_config(
                "sg1",
                installed_it_kw=1200,
                targets=PUE_TARGETS,
                meters=[
                    {"name": "incomer-a", "role": "facility"},
                    {"name": "ups-1", "role": "it", "point": "ups_output"},
                ],
            ),
            site_config(
                "jhr1",
                grid_zone="MY-PEN",
                installed_it_kw=2000,
                pue_category=2,
                meters=[
                    {"name": "incomer", "role": "facility"},
                    {"name": "pdu-a", "role": "it", "point": "pdu_output"},
                ],
            ),
        ]
    }
    return list(settings_from(data).sites)


def _snapshot(meters: tuple[MeterState, ...] | None = None) -> Snapshot:
    if meters is None:
        meters = (
            MeterState("sg1", "incomer-a", "facility", 1000.0, power_w=1500.0, temp_c=31.5),
            MeterState("sg1", "ups-1", "it", 1001.0, power_w=1000.0),
            MeterState("jhr1", "pdu-a", "it", 1002.0),
        )
    sg1 = SiteLive(
        site="sg1",
        energy_wh={"facility": 150.0, "it": 100.0},
        water_l=12.5,
        emissions_g=4200.0,
        grid_energy_wh=110.0,
        grid_zone="SG",
        grid_intensity_g_per_kwh=408.0,
        pue_category=1,
        kpis={
            300: {
                "pue": LiveKPI(1.5, 0.95),
                "renewable_share": LiveKPI(0.12, 0.95),
                "ppue:hall-1": LiveKPI(1.3, 0.95, zone="hall-1"),
                "ppue:hall-2": LiveKPI(None, 0.5, zone="hall-2"),
            },
            3600: {"pue": LiveKPI(None, 0.4), "renewable_share": LiveKPI(None, 0.4)},
            86400: {"pue": LiveKPI(1.47, 0.99), "renewable_share": LiveKPI(0.2, 0.99)},
        },
        counter_events={("incomer-a", "spike"): 1, ("incomer-a", "bridged"): 3},
    )
    jhr1 = replace(
        sg1,
        site="jhr1",
        grid_zone="MY-PEN",
        grid_intensity_g_per_kwh=None,
        pue_category=2,
        energy_wh={"facility": 10.0},
    )
    sink = SinkHealth(
        name="influxdb_v2",
        written=100,
        failures=2,
        last_success_s=999.0,
        queue_batches=1,
        spool_bytes=2048,
        spool_batches=3,
        spool_oldest_age_s=12.0,
        dropped=4,
        write_seconds=_HIST,
        batch_readings=_HIST,
        spool_full=True,
        held_readings=500,
        spool_free_bytes=1 << 20,
    )
    health = Health(
        agent="collector-1",
        version="0.1.0",
        start_time_s=900.0,
        messages_received=50,
        readings_accepted=45,
        rejections={"malformed_json": 3, "custom_reason": 1},
        mqtt_connected=True,
        mqtt_reconnects=1,
        series_refused=0,
        meters_tracked=3,
        sinks=(sink,),
    )
    return Snapshot(taken_at_s=1003.0, meters=meters, sites=(sg1, jhr1), health=health)


def _samples(collector: SnapshotCollector) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for fam in collector.collect()
        for s in fam.samples
    }


def _value(collector: SnapshotCollector, name: str, **labels: str) -> float | None:
    return _samples(collector).get((name, frozenset(labels.items())))


def test_every_family_is_catalogued_with_its_type_and_labels() -> None:
    families = list(SnapshotCollector(_snapshot, _sites()).collect())
    seen = set()
    for fam in families:
        # prometheus_client strips _total from counter family names and _info from info ones.
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        assert name in METRICS, f"{name} is emitted but not catalogued"
        m = METRICS[name]
        assert fam.type == m.type, name
        assert fam.documentation == m.help, name
        for s in fam.samples:
            assert s.name in m.series_names, (name, s.name)
            keys = set(s.labels) - ({"le"} if s.name.endswith("_bucket") else set())
            assert keys == set(m.labels), (name, s.labels)
        seen.add(name)
        if m.type == "histogram":
            bounds = [float(s.labels["le"]) for s in fam.samples if s.name.endswith("_bucket")]
            assert bounds[-1] == float("inf")
    assert len(seen) == len(families), "a family is emitted twice"


def test_a_populated_snapshot_emits_every_catalogue_metric_with_samples() -> None:
    families = list(SnapshotCollector(_snapshot, _sites()).collect())
    with_samples = {
        (f.name + "_total" if f.type == "counter" else f.name) for f in families if f.samples
    }
    assert with_samples == set(METRICS)


def test_energy_is_exported_in_joules_and_pue_only_when_not_withheld() -> None:
    c = SnapshotCollector(_snapshot, _sites())
    snap = _snapshot()
    assert _value(c, "greendc_site_energy_joules_total", site="sg1", role="facility") == (
        snap.sites[0].energy_wh["facility"] * WH_TO_JOULES
    )
    assert _value(c, "greendc_site_pue_ratio", site="sg1", window="5m", category="1") == 1.5
    assert _value(c, "greendc_site_grid_energy_joules_total", site="sg1") == 110.0 * WH_TO_JOULES
    assert _value(c, "greendc_site_pue_ratio", site="jhr1", window="24h", category="2") == 1.47
    withheld = [
        k for k in _samples(c) if k[0] == "greendc_site_pue_ratio" and ("window", "1h") in k[1]
    ]
    assert withheld == []
    assert _value(c, "greendc_site_pue_withheld", site="sg1", window="1h") == 1.0
    assert _value(c, "greendc_site_pue_withheld", site="sg1", window="5m") == 0.0
    assert _value(c, "greendc_site_pue_coverage_ratio", site="sg1", window="1h") == 0.4
    q = {"site": "sg1", "window": "1h", "kpi": "pue"}
    assert _value(c, "greendc_site_kpi_quality", **q, quality="withheld") == 1.0
    assert _value(c, "greendc_site_kpi_quality", **q, quality="ok") == 0.0
    assert _value(c, "greendc_site_kpi_share_ratio", **q, share="missing") == pytest.approx(0.6)
    assert (
        _value(
            c, "greendc_meter_counter_events_total", site="sg1", meter="incomer-a", event="spike"
        )
        == 1.0
    )
    assert _value(c, "greendc_site_renewable_share_ratio", site="sg1", window="1h") is None
    # No intensity for a site whose factor is unknown, rather than a made-up zero.
    assert (
        _value(c, "greendc_site_grid_carbon_intensity_grams_per_kwh", site="jhr1", zone="MY-PEN")
        is None
    )


def test_targets_come_from_the_site_configuration() -> None:
    sites = _sites()
    c = SnapshotCollector(_snapshot, sites)
    for site in sites:
        assert _value(c, "greendc_site_pue_warning_ratio", site=site.name) == (
            site.targets.pue_warning
        )
        assert _value(c, "greendc_site_pue_critical_ratio", site=site.name) == (
            site.targets.pue_critical
        )
        assert _value(c, "greendc_site_installed_it_watts", site=site.name) == (
            site.installed_it_kw * 1000
        )


def test_every_rejection_reason_is_exported_from_zero() -> None:
    c = SnapshotCollector(_snapshot)
    for reason in REJECTION_REASONS:
        expected = _snapshot().health.rejections.get(reason, 0)
        assert _value(c, "greendc_agent_rejections_total", reason=reason) == expected
    assert _value(c, "greendc_agent_rejections_total", reason="custom_reason") == 1


def test_a_meter_missing_from_the_next_snapshot_disappears() -> None:
    full = _snapshot()
    snapshots = [full, replace(full, meters=full.meters[1:])]
    c = SnapshotCollector(lambda: snapshots.pop(0))
    first, second = _samples(c), _samples(c)
    key = (
        "greendc_meter_power_watts",
        frozenset({"site": "sg1", "meter": "incomer-a", "role": "facility"}.items()),
    )
    assert first[key] == 1500.0
    assert key not in second
    assert not any(("meter", "incomer-a") in labels for _, labels in second)


@pytest.mark.parametrize(
    ("seconds", "label"), [(300, "5m"), (3600, "1h"), (86400, "24h"), (90, "90s"), (5400, "90m")]
)
def test_window_label(seconds: int, label: str) -> None:
    assert window_label(seconds) == label


def test_window_label_refuses_non_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        window_label(0)


def _parsed(text: str) -> set[tuple[str, frozenset[tuple[str, str]], float]]:
    return {
        (s.name, frozenset(s.labels.items()), s.value)
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def test_fast_exposition_equals_generate_latest_including_escaping() -> None:
    odd = MeterState('si"te', "me\\ter\nx", "it", 5.0, power_w=float("inf"), temp_c=-0.0)
    snap = _snapshot((*_snapshot().meters, odd))
    collector = SnapshotCollector(lambda: snap, _sites())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    fast = collector.exposition().decode()
    reference = generate_latest(registry).decode()
    assert _parsed(fast) == _parsed(reference)
    assert ('si"te', "me\\ter\nx") in {
        (dict(lbl).get("site"), dict(lbl).get("meter")) for _, lbl, _ in _parsed(fast)
    }


def _get(
    port: int, path: str = "/metrics", method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_serve_on_a_fresh_registry_in_a_named_thread() -> None:
    with serve(MetricsSettings(port=0), _snapshot, _sites()) as server:
        assert server.port > 0
        status, headers, body = _get(server.port)
        assert status == 200
        assert headers["content-type"].startswith("text/plain")
        assert 'greendc_meter_power_watts{site="sg1",meter="ups-1",role="it"} 1000.0' in (
            body.decode()
        )
        assert THREAD_NAME in {t.name for t in threading.enumerate()}
        assert b"greendc_" not in generate_latest(REGISTRY)
        status, headers, zipped = _get(server.port, headers={"Accept-Encoding": "gzip"})
        assert headers.get("content-encoding") == "gzip"
        assert _parsed(gzip.decompress(zipped).decode()) == _parsed(body.decode())
        assert _get(server.port, method="POST")[0] == 405
        port = server.port
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    assert THREAD_NAME not in {t.name for t in threading.enumerate()}


def test_public_names_are_pinned() -> None:
    assert sorted(exporters.__all__) == [
        "MetricsServer",
        "SnapshotCollector",
        "WebConfig",
        "build_rules",
        "load_web_config",
        "parse_web_config",
        "serve",
        "window_label",
        "write_rules",
    ]
    for name in exporters.__all__:
        assert getattr(exporters, name) is not None
