"""Fault tests against real servers: every reading published is stored exactly once.

Each test counts from publisher to storage: the distinct (site, meter, ts) keys stored equal
those published, the total rows equal the distinct keys (nothing doubled), and the agent's
own counters agree (readings written per sink). InfluxDB and the embedded store both keep
one point per series and timestamp, so the row count alone could hide a double write: the
written counters and the recorded write order catch that.

The faults: InfluxDB stopped mid-stream; Mosquitto restarted mid-stream; the agent killed
with SIGKILL during a sink outage and restarted; a sink stalled behind a proxy.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client.parser import text_string_to_metric_families

from greendc.collector.agent import Agent
from greendc.collector.sinks import InfluxV1Sink
from greendc.exporters.prometheus import SnapshotCollector
from greendc.model import Reading
from greendc.store import EmbeddedStore
from tests.helpers import SITES, Publisher, make_settings, wait_until
from tests.servers import InfluxDB1, Mosquitto, free_port, http_request

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GREENDC = ROOT / ".venv" / "bin" / "greendc"
METERS = ["incomer", "ups-1", "ups-2", "chiller", "solar"]
Key = tuple[str, str, int]


# -- helpers ------------------------------------------------------------------------------


def stream(
    prefix: str, start: int, count: int, t0: float
) -> tuple[list[tuple[str, Any]], dict[Key, float]]:
    """``count`` single readings numbered from ``start``; every one has its own timestamp."""
    msgs: list[tuple[str, Any]] = []
    expected: dict[Key, float] = {}
    for i in range(start, start + count):
        meter = METERS[i % len(METERS)]
        ts_ms = round(t0 * 1000) + i * 7  # distinct per reading, increasing in publish order
        power = 1000.0 + i + 0.5
        msgs.append((f"{prefix}/greendc/sg1/{meter}", {"ts": ts_ms / 1000, "power_w": power}))
        expected[("sg1", meter, ts_ms)] = power
    return msgs, expected


def influx_rows(server: InfluxDB1, db: str) -> list[tuple[Key, float]]:
    """Every stored point as ((site, meter, ts_ms), power_w), duplicates included."""
    res = server.query(db, "SELECT power_w, site, meter FROM greendc_reading")
    series = res["results"][0].get("series") or []
    out = []
    for s in series:
        cols = s["columns"]
        for row in s["values"]:
            rec = dict(zip(cols, row, strict=True))
            out.append(((rec["site"], rec["meter"], rec["time"] // 1_000_000), rec["power_w"]))
    return out


def influx_count(server: InfluxDB1, db: str) -> int:
    """Points InfluxDB itself counts."""
    res = server.query(db, "SELECT count(power_w) FROM greendc_reading")
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def assert_exactly(rows: list[tuple[Key, float]], expected: dict[Key, float]) -> None:
    """Stored == published: same keys and values, no key twice."""
    keys = [k for k, _ in rows]
    assert len(keys) == len(set(keys)), "a reading was stored twice"
    missing = set(expected) - set(keys)
    extra = set(keys) - set(expected)
    assert not missing and not extra, (len(missing), len(extra))
    assert dict(rows) == expected


def store_rows(path: Path) -> list[tuple[Key, float]]:
    """Every row of the embedded store as ((site, meter, ts_ms), power_w)."""
    store = EmbeddedStore(path)
    try:
        return [((r.site, r.meter, r.ts_ms), r.fields["power_w"]) for r in store.readings()]
    finally:
        store.close()


def metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    total = 0.0
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def agent_metrics(agent: Agent) -> str:
    """What /metrics would show for this agent right now."""
    return SnapshotCollector(agent.snapshot).exposition().decode()


class RecordingSink:
    """A real sink, observed: records each batch it stored, in the order it stored them.

    It takes readings only (``accepts_lines`` False), so the pipeline hands it readings it
    can record; the collector's own runs below spool line protocol.
    """

    accepts_lines = False

    def __init__(self, inner: InfluxV1Sink) -> None:
        self.inner = inner
        self.name = inner.name
        self.stored: list[Reading] = []
        self._lock = threading.Lock()

    def write(self, readings: list[Reading]) -> None:
        """Write through; record only what the server confirmed."""
        self.inner.write(readings)
        with self._lock:
            self.stored.extend(readings)

    def close(self) -> None:
        """Close the inner sink."""
        self.inner.close()


class StallProxy:
    """An HTTP proxy in a thread that holds every request until ``release()``.

    Stands between the agent and InfluxDB to make the sink as slow as we like without a
    timing assumption: the test decides when the writes may go through.
    """

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.gate = threading.Event()
        self.requests = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                proxy.requests += 1
                proxy.gate.wait(60)
                status, answer = http_request(
                    proxy.target + self.path,
                    data=body,
                    method="POST",
                    headers={"Content-Type": self.headers.get("Content-Type", "text/plain")},
                )
                self.send_response(status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="stall-proxy", daemon=True
        )
        self._thread.start()

    def release(self) -> None:
        """Let every held and future request through."""
        self.gate.set()

    def close(self) -> None:
        """Release, stop serving and close the socket."""
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(10)


class PersistentPublisher:
    """A QoS 1 publisher with its own persistent session that rides out broker restarts.

    paho keeps unacknowledged and not-yet-sent QoS 1 messages and (re)sends them after it
    reconnects; PUBACKs are counted through ``on_publish``.
    """

    def __init__(self, broker: Mosquitto, client_id: str) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.acked: set[int] = set()
        self.failed: list[int] = []
        self.sent: list[int] = []
        self._lock = threading.Lock()
        self.client.on_publish = self._on_publish
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client.connect(broker.host, broker.port, properties=props, clean_start=False)
        self.client.loop_start()

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        with self._lock:
            if reason.is_failure:
                self.failed.append(mid)
            self.acked.add(mid)

    def publish(self, messages: list[tuple[str, Any]]) -> None:
        """Queue messages (works while disconnected: paho sends them after reconnecting)."""
        for topic, payload in messages:
            info = self.client.publish(topic, json.dumps(payload).encode(), qos=1)
            self.sent.append(info.mid)

    def all_acked(self) -> bool:
        """Whether the broker acknowledged every message sent."""
        with self._lock:
            return self.acked.issuperset(self.sent)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def own_influx() -> Iterator[InfluxDB1]:
    """An InfluxDB 1.x these tests may stop and restart without disturbing other tests."""
    with InfluxDB1() as server:
        yield server


@pytest.fixture
def own_db(own_influx: InfluxDB1, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on ``own_influx`` (which is running again when the test ends)."""
    name = "faults_" + request.node.name.replace("-", "_")[:40]
    own_influx.start()
    own_influx.create_database(name)
    yield name
    own_influx.start()
    own_influx.drop_database(name)


# -- 1. InfluxDB stopped mid-stream ----------------------------------------------------------


def test_influxdb_outage_spools_and_replays_everything_in_order(
    mosquitto: Mosquitto,
    own_influx: InfluxDB1,
    own_db: str,
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        sinks={
            "influxdb_v1": {"url": own_influx.url, "db": own_db, "timeout_seconds": 5},
            "batch_size": 100,
        },
    )
    assert settings.sinks.influxdb_v1 is not None
    sink = RecordingSink(InfluxV1Sink(settings.sinks.influxdb_v1))
    t0 = time.time() - 3600
    before, exp1 = stream(mqtt_topic_prefix, 0, 600, t0)
    during, exp2 = stream(mqtt_topic_prefix, 600, 800, t0)
    after, exp3 = stream(mqtt_topic_prefix, 1400, 600, t0)
    expected = {**exp1, **exp2, **exp3}
    n = len(expected)
    agent = Agent(settings, sinks=[sink])
    worker = agent.pipeline.workers[0]
    pub = Publisher(mosquitto.host, mosquitto.port)
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub.publish(before)
        assert wait_until(lambda: worker.stats.written == len(exp1)), worker.stats.written

        own_influx.stop()
        pub.publish(during)
        assert wait_until(lambda: agent.stats.readings_accepted == len(exp1) + len(exp2))
        # Everything received during the outage ends up in the spool, and /metrics says so.
        spool_dir = tmp_path / "spool" / sink.name

        def spooled() -> int:
            return sum(len(f.read_text().splitlines()) for f in spool_dir.glob("*.jsonl"))

        assert wait_until(lambda: spooled() == len(exp2)), spooled()
        text = agent_metrics(agent)
        assert metric(text, "greendc_spool_batches", sink=sink.name) == worker.spool.batches
        assert metric(text, "greendc_spool_bytes", sink=sink.name) > 0
        assert metric(text, "greendc_sink_write_failures_total", sink=sink.name) >= 1
        assert worker.stats.written == len(exp1)

        own_influx.start()
        pub.publish(after)  # new readings join the end of the spool while it drains
        assert wait_until(lambda: worker.stats.written == n, timeout_s=40), worker.stats.written
        assert wait_until(lambda: worker.spool.batches == 0)
    finally:
        pub.close()
        agent.stop()
    assert worker.stats.written == n and worker.stats.dropped == 0
    assert agent.stats.readings_accepted == n
    assert metric(agent_metrics(agent), "greendc_spool_bytes", sink=sink.name) == 0
    # Stored in the order they were published (= the order they were spooled), once each.
    assert [r.ts_ms for r in sink.stored] == [k[2] for k in expected]
    assert_exactly(influx_rows(own_influx, own_db), expected)
    assert influx_count(own_influx, own_db) == n


# -- 2. Mosquitto restarted mid-stream -----------------------------------------------------


def test_broker_restart_mid_stream_loses_nothing(
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    store = tmp_path / "store.sqlite"
    with Mosquitto() as broker:
        settings = make_settings(
            broker.url, mqtt_topic_prefix, tmp_path, sinks={"embedded": {"path": str(store)}}
        )
        t0 = time.time() - 3600
        part_a, exp_a = stream(mqtt_topic_prefix, 0, 500, t0)
        part_b, exp_b = stream(mqtt_topic_prefix, 500, 500, t0)
        part_c, exp_c = stream(mqtt_topic_prefix, 1000, 500, t0)
        expected = {**exp_a, **exp_b, **exp_c}
        agent = Agent(settings)
        agent.start()
        pub = PersistentPublisher(broker, f"pub-{mqtt_topic_prefix.replace('/', '-')}")
        try:
            assert agent.wait_connected(10)
            pub.publish(part_a)
            assert wait_until(pub.all_acked)
            # Stop while the agent is still taking part A (some of it in flight, unacked).
            broker.stop()
            assert wait_until(lambda: not agent.stats.mqtt_connected)
            pub.publish(part_b)  # queued by paho while the broker is down
            broker.start()
            pub.publish(part_c)
            assert wait_until(pub.all_acked, timeout_s=30), (len(pub.acked), len(pub.sent))
            assert pub.failed == []
            worker = agent.pipeline.workers[0]
            assert wait_until(
                lambda: {k for k, _ in store_rows(store)} == set(expected), timeout_s=30
            ), len(store_rows(store))
            assert agent.stats.mqtt_connections >= 2
        finally:
            pub.close()
            agent.stop()
    rows = store_rows(store)
    assert_exactly(rows, expected)
    # At-least-once may redeliver what was in flight at the restart; each redelivery is a
    # rewrite of the same point. Everything received was written, nothing beyond it.
    assert worker.stats.written == agent.stats.readings_accepted >= len(expected)
    assert worker.stats.dropped == 0


# -- 3. the agent killed (SIGKILL) during a sink outage -------------------------------------


def _scrape(port: int) -> str | None:
    try:
        status, body = http_request(f"http://127.0.0.1:{port}/metrics", timeout_seconds=2)
    except OSError:
        return None
    return body.decode() if status == 200 else None


def _start_collector(cfg: Path, cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GREENDC_")}
    with log.open("ab") as fh:
        return subprocess.Popen(
            [str(GREENDC), "collect", "--config", str(cfg)],
            cwd=cwd,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _metric_now(port: int, name: str, **labels: str) -> float | None:
    text = _scrape(port)
    return None if text is None else metric(text, name, **labels)


def test_sigkill_during_outage_then_restart_replays_spool_and_redelivery(
    mosquitto: Mosquitto,
    own_influx: InfluxDB1,
    own_db: str,
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    p = mqtt_topic_prefix
    config = {
        "mqtt": {
            "url": mosquitto.url,
            "client_id": f"kill-{p.replace('/', '-')}",
            "reconnect_max_seconds": 2,
            "max_inflight": 1000,
        },
        "mappings": [{"topic": f"{p}/greendc/{{site}}/{{meter}}"}],
        # Flushes happen at 500 unacknowledged messages (half of max_inflight); the timer
        # is set long so the last messages before the kill are held in memory, unacked.
        "sinks": {
            "influxdb_v1": {"url": own_influx.url, "db": own_db, "timeout_seconds": 2},
            "spool": {"dir": str(tmp_path / "spool")},
            "batch_size": 100_000,
            "flush_interval_seconds": 60,
        },
        "metrics": {"port": port},
        "sites": SITES,
    }
    cfg = tmp_path / "collector.yaml"
    cfg.write_text(json.dumps(config))
    log = tmp_path / "collector.log"
    t0 = time.time() - 3600
    spooled_msgs, exp1 = stream(p, 0, 1000, t0)
    held_msgs, exp2 = stream(p, 1000, 120, t0)
    expected = {**exp1, **exp2}
    sink = "influxdb_v1"

    own_influx.stop()
    proc = _start_collector(cfg, tmp_path, log)
    try:
        assert wait_until(
            lambda: _metric_now(port, "greendc_agent_mqtt_connected") == 1, timeout_s=30
        ), log.read_text()[-2000:]
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(spooled_msgs)
        assert wait_until(
            lambda: (
                _metric_now(port, "greendc_spool_batches", sink=sink) == 2
                and _metric_now(port, "greendc_sink_queue_batches", sink=sink) == 0
            ),
            timeout_s=30,
        ), log.read_text()[-2000:]
        pub.publish(held_msgs)
        pub.close()
        assert wait_until(
            lambda: _metric_now(port, "greendc_agent_messages_received_total") == 1120
        )
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    spool_files = sorted((tmp_path / "spool" / sink).glob("*.lp"))
    assert sum(len(f.read_text().splitlines()) for f in spool_files) == 1000

    own_influx.start()
    proc = _start_collector(cfg, tmp_path, log)
    try:
        # The spool replays; the broker redelivers the 120 messages that were never acked.
        assert wait_until(
            lambda: (
                _metric_now(port, "greendc_sink_readings_written_total", sink=sink) == 1000
                and _metric_now(port, "greendc_spool_batches", sink=sink) == 0
                and _metric_now(port, "greendc_agent_messages_received_total") == 120
            ),
            timeout_s=40,
        ), log.read_text()[-3000:]
        proc.send_signal(signal.SIGTERM)  # flushes the redelivered, still pending readings
        assert proc.wait(30) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert_exactly(influx_rows(own_influx, own_db), expected)
    assert influx_count(own_influx, own_db) == len(expected)
    assert [f.name for f in (tmp_path / "spool" / sink).glob("*.*") if f.is_file()] == []


# -- 4. a slow sink ---------------------------------------------------------------------------


def test_stalled_sink_does_not_delay_the_other_and_memory_stays_bounded(
    mosquitto: Mosquitto,
    own_influx: InfluxDB1,
    own_db: str,
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    proxy = StallProxy(own_influx.url)
    store = tmp_path / "store.sqlite"
    max_queue = 2
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        sinks={
            "influxdb_v1": {"url": proxy.url, "db": own_db, "timeout_seconds": 60},
            "embedded": {"path": str(store)},
            "batch_size": 50,
            "max_queue_batches": max_queue,
        },
    )
    msgs, expected = stream(mqtt_topic_prefix, 0, 1000, time.time() - 3600)
    n = len(expected)
    agent = Agent(settings)
    slow, fast = agent.pipeline.workers
    assert (slow.name, fast.name) == ("influxdb_v1", "embedded")
    queue_seen: list[int] = []
    try:
        agent.start()
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(msgs)
        pub.close()

        def fast_done() -> bool:
            queue_seen.append(slow._queue.qsize())
            return fast.stats.written == n

        # The embedded store gets everything while InfluxDB has not stored a single point.
        assert wait_until(fast_done), fast.stats.written
        assert slow.stats.written == 0 and proxy.requests >= 1
        assert max(queue_seen) <= max_queue and slow.spool.batches > 0
        assert metric(agent_metrics(agent), "greendc_spool_batches", sink="influxdb_v1") > 0
        assert {k for k, _ in store_rows(store)} == set(expected)

        proxy.release()
        assert wait_until(lambda: slow.stats.written == n, timeout_s=30), slow.stats.written
    finally:
        agent.stop()
        proxy.close()
    assert (slow.stats.written, fast.stats.written) == (n, n)
    assert slow.stats.dropped == fast.stats.dropped == 0
    assert_exactly(influx_rows(own_influx, own_db), expected)
    assert_exactly(store_rows(store), expected)
