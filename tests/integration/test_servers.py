"""The real-server harness works: each server accepts data and gives it back.

These tests guard the ground the other integration tests stand on; when one fails, look
here before suspecting greendc's own code.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from influxdb_client import InfluxDBClient
from influxdb_client.client.write_api import SYNCHRONOUS
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from tests.servers import (
    InfluxDB1,
    Mosquitto,
    PrometheusFactory,
    ServerNotInstalled,
    VictoriaMetrics,
    free_port,
)

pytestmark = pytest.mark.integration

DEADLINE_SECONDS = 20.0


class _Subscriber:
    """A paho MQTT 5 client on a background loop that records what it receives."""

    def __init__(self, broker: Mosquitto, client_id: str, *, clean_start: bool) -> None:
        self.received: list[tuple[str, bytes]] = []
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        # The broker keeps the session (and queued QoS 1 messages) for an hour offline.
        properties.SessionExpiryInterval = 3600
        self.client.connect(
            broker.host, broker.port, clean_start=clean_start, properties=properties
        )
        self.client.loop_start()
        assert self._connected.wait(DEADLINE_SECONDS), "no CONNACK from mosquitto"

    def _on_connect(self, *_args: Any) -> None:
        self._connected.set()

    def _on_subscribe(self, *_args: Any) -> None:
        self._subscribed.set()

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.received.append((msg.topic, bytes(msg.payload)))

    def subscribe(self, topic: str) -> None:
        """Subscribe at QoS 1 and wait for the SUBACK."""
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(DEADLINE_SECONDS), "no SUBACK from mosquitto"

    def wait_for_count(self, count: int) -> list[tuple[str, bytes]]:
        """Poll until at least ``count`` messages arrived (or the deadline passes)."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.received) >= count:
                    return list(self.received)
            time.sleep(0.02)
        with self._lock:
            return list(self.received)

    def close(self) -> None:
        """Disconnect (the session stays on the broker) and stop the network loop."""
        self.client.disconnect()
        self.client.loop_stop()


def _publish_qos1(broker: Mosquitto, messages: list[tuple[str, bytes]]) -> None:
    """Publish each message at QoS 1 and wait until the broker acknowledged all of them."""
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"pub-{uuid.uuid4().hex[:8]}",
        protocol=mqtt.MQTTv5,
    )
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=DEADLINE_SECONDS)
            assert info.is_published(), "mosquitto did not PUBACK a QoS 1 message"
    finally:
        client.disconnect()
        client.loop_stop()


def test_mosquitto_delivers_qos1(mosquitto: Mosquitto, mqtt_topic_prefix: str) -> None:
    """A QoS 1 message published through the broker reaches a subscriber unchanged."""
    subscriber = _Subscriber(mosquitto, f"sub-{uuid.uuid4().hex[:8]}", clean_start=True)
    try:
        subscriber.subscribe(f"{mqtt_topic_prefix}/#")
        sent = [
            (f"{mqtt_topic_prefix}/site-a/ups-{i}", f'{{"power_w": {i}}}'.encode())
            for i in range(5)
        ]
        _publish_qos1(mosquitto, sent)
        received = subscriber.wait_for_count(len(sent))
    finally:
        subscriber.close()
    assert sorted(received) == sorted(sent)


def test_mosquitto_keeps_persistent_session_across_restart(
    mosquitto: Mosquitto, mqtt_topic_prefix: str
) -> None:
    """QoS 1 messages queued for an offline persistent session survive a broker restart."""
    client_id = f"persist-{uuid.uuid4().hex[:8]}"
    # clean_start=False even on the first connect: mosquitto 2.0 writes a session to its
    # persistence file only for clients whose latest CONNECT had clean_start=False.
    subscriber = _Subscriber(mosquitto, client_id, clean_start=False)
    subscriber.subscribe(f"{mqtt_topic_prefix}/#")
    subscriber.close()

    queued_offline = [(f"{mqtt_topic_prefix}/m/{i}", str(i).encode()) for i in range(20)]
    _publish_qos1(mosquitto, queued_offline)
    port_before = mosquitto.port
    mosquitto.restart()
    assert mosquitto.port == port_before

    after_restart = [(f"{mqtt_topic_prefix}/m/late", b"late")]
    _publish_qos1(mosquitto, after_restart)
    # Same client id, clean_start=False: the broker must resume the stored session.
    resumed = _Subscriber(mosquitto, client_id, clean_start=False)
    try:
        received = resumed.wait_for_count(len(queued_offline) + len(after_restart))
    finally:
        resumed.close()
    assert sorted(received) == sorted(queued_offline + after_restart)


def test_influxdb1_write_and_query(influxdb1: InfluxDB1, fresh_influx_db: str) -> None:
    """Line protocol written to /write comes back from /query with tags, values and times."""
    base_ns = 1_764_374_400_000_000_000
    points = [
        (f"ups-{i % 3}", round(random.uniform(100, 10_000), 3), base_ns + i * 10**9)
        for i in range(30)
    ]
    lines = [f"power,site=sg-1,meter={meter} power_w={value} {ts}" for meter, value, ts in points]
    influxdb1.write(fresh_influx_db, lines)

    answer = influxdb1.query(
        fresh_influx_db, 'SELECT "power_w", "meter", "site" FROM "power" ORDER BY time'
    )
    series = answer["results"][0]["series"][0]
    columns = series["columns"]
    rows = [dict(zip(columns, row, strict=True)) for row in series["values"]]
    assert [(r["meter"], r["power_w"], r["time"]) for r in rows] == points
    assert {r["site"] for r in rows} == {"sg-1"}


def test_victoria_metrics_accepts_influxdb_client_v2_writes(victoria: VictoriaMetrics) -> None:
    """influxdb-client's synchronous WriteApi stores points VictoriaMetrics exports back."""
    measurement = f"harness_{uuid.uuid4().hex[:8]}"
    base_ns = 1_700_000_000_000_000_000  # old on purpose: retention must not drop it
    points = {base_ns + i * 10**9: float(i * 7 + 0.5) for i in range(10)}
    records = [f"{measurement},site=jb-1,meter=pdu-1 power_w={v} {ts}" for ts, v in points.items()]
    with InfluxDBClient(url=victoria.url, token="unused", org="greendc") as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="greendc", record=records)

    exported = victoria.export(f'{{__name__="{measurement}_power_w"}}')
    assert len(exported) == 1
    series = exported[0]
    assert series["metric"]["site"] == "jb-1"
    assert series["metric"]["meter"] == "pdu-1"
    got = dict(zip(series["timestamps"], series["values"], strict=True))
    assert got == {ts // 10**6: v for ts, v in points.items()}


@pytest.fixture
def metrics_endpoint() -> Iterator[tuple[str, Gauge]]:
    """A prometheus_client HTTP server on a free port serving one gauge from its own registry."""
    registry = CollectorRegistry()
    gauge = Gauge(
        "greendc_harness_power_watts", "Harness test gauge.", ["meter"], registry=registry
    )
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        yield f"127.0.0.1:{port}", gauge
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=DEADLINE_SECONDS)


def test_prometheus_scrapes_a_target(
    prometheus_factory: PrometheusFactory, metrics_endpoint: tuple[str, Gauge]
) -> None:
    """Prometheus scrapes a real /metrics endpoint and answers a query with its value."""
    target, gauge = metrics_endpoint
    value_w = round(random.uniform(1_000, 9_000), 2)
    gauge.labels(meter="ups-1").set(value_w)
    prometheus = prometheus_factory([target])

    result = prometheus.wait_for(
        'greendc_harness_power_watts{meter="ups-1"}', lambda r: len(r) == 1
    )
    assert float(result[0]["value"][1]) == value_w
    assert result[0]["metric"]["instance"] == target


def test_server_pid_file_tracks_the_process(victoria: VictoriaMetrics) -> None:
    """The PID file the test command's trap relies on holds the running server's PID."""
    assert victoria.running
    assert victoria.pid_file.read_text().strip() == str(victoria.pid)


def test_missing_binary_fails_with_setup_hint(tmp_path: Path) -> None:
    """A server whose binary is absent raises an error that says how to install it."""

    class Absent(VictoriaMetrics):
        binary = "greendc-no-such-server-binary"

    with pytest.raises(ServerNotInstalled, match=r"scripts/setup\.sh"):
        Absent(workdir=tmp_path)
