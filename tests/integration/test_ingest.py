"""MQTT -> collector -> InfluxDB 1.x, a v2-API server and the embedded store, for real."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from greendc.collector.agent import Agent
from greendc.store import EmbeddedStore
from tests.helpers import Publisher, make_settings, wait_until
from tests.servers import InfluxDB1, Mosquitto, VictoriaMetrics

pytestmark = pytest.mark.integration

N_SINGLE = 300
N_BATCHES = 20
BATCH = 25


def _messages(
    prefix: str, t0: float
) -> tuple[list[tuple[str, object]], dict[tuple[str, str, int], float]]:
    """Native single readings and gateway batches, with the values each point must hold."""
    msgs: list[tuple[str, object]] = []
    expected: dict[tuple[str, str, int], float] = {}
    meters = ["incomer", "ups-1", "ups-2", "chiller", "solar"]
    for i in range(N_SINGLE):
        meter = meters[i % len(meters)]
        ts = t0 + i * 0.5
        power = 1000.0 + i + 0.25
        msgs.append(
            (f"{prefix}/greendc/sg1/{meter}", {"ts": ts, "power_w": power, "energy_wh": i * 10})
        )
        expected[("sg1", meter, round(ts * 1000))] = power
    for b in range(N_BATCHES):
        items = []
        for j in range(BATCH):
            ts = t0 + b * 30 + j * 0.001
            power = 2000.0 + b * BATCH + j
            meter = "incomer" if j % 2 else "pdu-a"
            items.append({"meter": meter, "ts": ts, "power_w": power})
            expected[("jhr1", meter, round(ts * 1000))] = power
        msgs.append((f"{prefix}/greendc/jhr1", items))
    return msgs, expected


def test_native_readings_land_exactly_once_in_all_three_sinks(
    mosquitto: Mosquitto,
    influxdb1: InfluxDB1,
    victoria: VictoriaMetrics,
    fresh_influx_db: str,
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "store.sqlite"
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        sinks={
            "influxdb_v1": {"url": influxdb1.url, "db": fresh_influx_db},
            "influxdb_v2": {
                "url": victoria.url,
                "org": "greendc",
                "bucket": "greendc",
                "token": "unused-by-victoria",
            },
            "embedded": {"path": str(store_path)},
        },
    )
    # A distinct site tag value per test run keeps this test's series apart in VictoriaMetrics.
    t0 = time.time() - 3600 + (hash(mqtt_topic_prefix) % 1000)
    msgs, expected = _messages(mqtt_topic_prefix, t0)
    n = len(expected)
    agent = Agent(settings)
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(msgs)
        pub.close()
        assert wait_until(lambda: agent.stats.readings_accepted == n), agent.stats
        assert dict(agent.stats.rejections) == {}
    finally:
        agent.stop()
    written = {w.name: w.stats.written for w in agent.pipeline.workers}
    assert written == {"influxdb_v2": n, "influxdb_v1": n, "embedded": n}

    # (a) InfluxDB 1.x through the v1 API
    res = influxdb1.query(fresh_influx_db, "SELECT power_w, site, meter, role FROM greendc_reading")
    rows = res["results"][0]["series"][0]["values"]
    cols = res["results"][0]["series"][0]["columns"]
    got = {}
    for row in rows:
        rec = dict(zip(cols, row, strict=True))
        ts_ms = rec["time"] // 1_000_000  # the harness asks for epoch=ns
        got[(rec["site"], rec["meter"], ts_ms)] = rec["power_w"]
        assert rec["role"] in ("facility", "it", "cooling", "renewable_onsite")
    assert len(rows) == n
    assert got == expected

    # (b) the v2 API through influxdb-client (VictoriaMetrics)
    series = victoria.export('{__name__="greendc_reading_power_w"}')
    vm = {}
    for s in series:
        labels = s["metric"]
        for ts, v in zip(s["timestamps"], s["values"], strict=True):
            key = (labels["site"], labels["meter"], ts)
            if key in expected:
                vm[key] = v
    assert vm == expected

    # (c) the embedded store
    store = EmbeddedStore(store_path)
    emb = {(r.site, r.meter, r.ts_ms): r.fields["power_w"] for r in store.readings()}
    store.close()
    assert emb == expected


def test_bad_payloads_are_counted_and_the_agent_keeps_running(
    mosquitto: Mosquitto,
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    dlq = f"{mqtt_topic_prefix}/dead"
    settings = make_settings(
        mosquitto.url, mqtt_topic_prefix, tmp_path, mqtt={"dead_letter_topic": dlq}
    )
    p = mqtt_topic_prefix
    now = time.time()
    bad: list[tuple[str, object]] = [
        (f"{p}/greendc/sg1/ups-1", b"{oops"),
        (f"{p}/greendc/sg1/ups-1", b'{"power_w": "high"}'),
        (f"{p}/greendc/sg1/ups-1", b'{"power_w": NaN}'),
        (f"{p}/greendc/sg1/ups-1", b'{"power_w": -1e999}'),
        (f"{p}/greendc/sg1/ghost", {"power_w": 1}),
        (f"{p}/greendc/sg1/ups-1", {"power_w": 1, "ts": now + 86400}),
        (f"{p}/greendc/sg1/ups-1", {"power_w": 1, "ts": "not a time"}),
        (f"{p}/greendc/sg1", [{"meter": "ups,1 x=y", "power_w": 1}]),
        (f"{p}/greendc/sg1", [{"meter": 'ups"1\nx', "power_w": 1}]),
    ]
    received: list[bytes] = []
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    watcher = mqtt.Client(CallbackAPIVersion.VERSION2)
    watcher.on_message = lambda _c, _u, m: received.append(m.payload)
    watcher.connect(mosquitto.host, mosquitto.port)
    watcher.subscribe(dlq, qos=1)
    watcher.loop_start()
    with Agent(settings) as agent:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(bad)
        assert wait_until(lambda: agent.stats.messages_received == len(bad))
        pub.publish([(f"{p}/greendc/sg1/ups-1", {"power_w": 42.0, "ts": now})])
        assert wait_until(lambda: agent.stats.readings_accepted == 1)
        pub.close()
        assert dict(agent.stats.rejections) == {
            "malformed_json": 2,  # NaN is not JSON: strict parsing refuses the message
            "non_numeric": 1,
            "non_finite": 1,  # -1e999 is JSON but not a finite number
            "unknown_meter": 1,
            "timestamp_future": 1,
            "bad_timestamp": 1,
            "bad_identifier": 2,
        }
        assert wait_until(lambda: len(received) == len(bad))
    watcher.loop_stop()
    watcher.disconnect()
    import json

    reasons = sorted(json.loads(b)["rejections"][0]["reason"] for b in received)
    assert reasons.count("bad_identifier") == 2 and "malformed_json" in reasons
