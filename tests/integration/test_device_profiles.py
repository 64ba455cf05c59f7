"""Every shipped device profile through the real Mosquitto and `greendc collect` (issue 24).

For each profile, the payloads it was written from are published over MQTT to a collector
configured with nothing but ``profile: NAME`` and the site's meters; every row the embedded
store holds afterwards is compared exactly with the rows the profile documents.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from greendc.config import load_profile, profile_names
from tests.helpers import Publisher
from tests.servers import Mosquitto
from tests.support.collect_process import Collector
from tests.support.profiles import examples, expected_row, profile_mapping, site

pytestmark = pytest.mark.integration

TEN_YEARS_S = 10 * 365 * 86400.0  # the examples carry their documented (past) timestamps


def _config(
    broker: Mosquitto, client_id: str, mappings: list[dict[str, Any]], sites: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "mqtt": {"url": broker.url, "client_id": client_id, "reconnect_max_seconds": 2},
        "mappings": mappings,
        "validation": {"max_past_seconds": TEN_YEARS_S},
        "sites": sites,
    }


@pytest.mark.parametrize("name", profile_names())
def test_a_profile_stores_exactly_the_rows_it_documents(
    name: str, mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    p = mqtt_topic_prefix
    exs = examples(name)
    zones = {ex.site_timezone for ex in exs}
    assert len(zones) == 1, "one site time zone per profile's examples"
    base = load_profile(name).get("base_topic", "")
    meters = [m for ex in exs for m in ex.meters()]
    config = _config(
        mosquitto,
        f"profile-{p.replace('/', '-')}",
        [profile_mapping(name, base_topic=f"{p}/{base}" if base else p)],
        [site(meters, zones.pop())],
    )
    with Collector(config, tmp_path) as collector:
        began_ms = round(time.time() * 1000)
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            pub.publish((f"{p}/{ex.topic}", ex.payload) for ex in exs)
        finally:
            pub.close()
        collector.wait_accepted(sum(len(ex.readings) for ex in exs))
        ended_ms = round(time.time() * 1000) + 1000
        ignored = [reason for ex in exs for reason in ex.ignored]
        for reason in set(ignored):
            assert collector.value(
                "greendc_agent_messages_ignored_total", reason=reason
            ) == ignored.count(reason)
        assert collector.value("greendc_agent_rejections_total") == 0, collector.log_tail()
    rows = collector.rows()
    want = sorted(
        (expected_row(r) for ex in exs for r in ex.readings if r["ts"] != "arrival"), key=repr
    )
    arrival = sorted(
        (
            expected_row(r)[:3] + expected_row(r)[4:]
            for ex in exs
            for r in ex.readings
            if r["ts"] == "arrival"
        ),
        key=repr,
    )
    stamped = sorted((r for r in rows if not began_ms <= r[3] <= ended_ms), key=repr)
    assert stamped == want
    on_arrival = [r for r in rows if began_ms <= r[3] <= ended_ms]
    assert sorted((r[:3] + r[4:] for r in on_arrival), key=repr) == arrival
    assert len(rows) == len(want) + len(arrival)


def test_an_emontx4_per_input_is_six_meters_of_power_and_energy(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    # All twelve CT inputs of an emonTx4, plus the inputs that are not readings.
    p = mqtt_topic_prefix
    meters = [f"emontx4-ct{n}" for n in range(1, 7)]
    config = _config(
        mosquitto,
        f"emontx4-{p.replace('/', '-')}",
        [profile_mapping("emonhub-inputs", base_topic=f"{p}/emon")],
        [site(meters)],
    )
    power = {n: 100.0 * n + 0.5 for n in range(1, 7)}
    energy = {n: 10_000.0 * n for n in range(1, 7)}
    msgs: list[tuple[str, Any]] = []
    for n in range(1, 7):
        msgs.append((f"{p}/emon/emontx4/P{n}", str(power[n]).encode()))
        msgs.append((f"{p}/emon/emontx4/E{n}", str(int(energy[n])).encode()))
    msgs += [(f"{p}/emon/emontx4/{k}", b"1") for k in ("Vrms", "T1", "pulse", "MSG")]
    with Collector(config, tmp_path) as collector:
        pub = Publisher(mosquitto.host, mosquitto.port)
        try:
            pub.publish(msgs)
        finally:
            pub.close()
        collector.wait_accepted(12)
        assert collector.value("greendc_agent_messages_ignored_total", reason="ignored_topic") == 4
    rows = collector.rows()
    by_meter: dict[str, list[tuple[float | None, float | None]]] = {}
    for r in rows:
        by_meter.setdefault(r[1], []).append((r[4], r[5]))
    assert sorted(by_meter) == meters
    for n in range(1, 7):
        assert sorted(by_meter[f"emontx4-ct{n}"], key=str) == sorted(
            [(power[n], None), (None, energy[n])], key=str
        )
