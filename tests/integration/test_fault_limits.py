"""Faults at the limits, publisher to storage with counts (issue 20).

- A spool of a few MB while InfluxDB is down for 200,000 QoS 1 readings: with ``ack:
  durable`` the agent stops acknowledging and reading once the spool is full, the broker
  queues the rest, and everything is stored once when InfluxDB returns.
- The spool's own file system (a small tmpfs this test mounts) fills mid-stream, then is
  freed; and the same for the embedded store's SQLite file.
- The agent's system clock steps by +1 h and -1 h mid-stream (an injected clock).
- One broker of two stops mid-stream: the agent fails over, then back.

Every test asserts: stored == published (same keys and values), no key twice, nothing
counted as dropped.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from greendc.collector.agent import Agent
from tests.helpers import SITES, Publisher, make_settings, wait_until
from tests.integration.test_faults import (
    METERS,
    Key,
    PersistentPublisher,
    _metric_now,
    _start_collector,
    agent_metrics,
    assert_exactly,
    influx_count,
    influx_rows,
    metric,
    store_rows,
)
from tests.servers import InfluxDB1, Mosquitto, free_port

pytestmark = pytest.mark.integration


def gateway_stream(
    prefix: str, start: int, messages: int, per_message: int, t0: float
) -> tuple[list[tuple[str, Any]], dict[Key, float]]:
    """Gateway batches (``per_message`` readings each) on ``<prefix>/greendc/sg1``."""
    msgs: list[tuple[str, Any]] = []
    expected: dict[Key, float] = {}
    base_ms = round(t0 * 1000)
    for m in range(start, start + messages):
        batch = []
        for j in range(per_message):
            i = m * per_message + j
            meter = METERS[i % len(METERS)]
            ts_ms = base_ms + i  # distinct per meter: i differs between readings of one meter
            power = 1000.0 + i + 0.5
            batch.append({"meter": meter, "ts": ts_ms / 1000, "power_w": power})
            expected[("sg1", meter, ts_ms)] = power
        msgs.append((f"{prefix}/greendc/sg1", batch))
    return msgs, expected


@pytest.fixture(scope="module")
def own_influx() -> Iterator[InfluxDB1]:
    """An InfluxDB 1.x these tests may stop and restart without disturbing other tests."""
    with InfluxDB1() as server:
        yield server


@pytest.fixture
def own_db(own_influx: InfluxDB1, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database on ``own_influx`` (which is running again when the test ends)."""
    name = "limits_" + request.node.name.replace("-", "_")[:40]
    own_influx.start()
    own_influx.create_database(name)
    yield name
    own_influx.start()
    own_influx.drop_database(name)


class SmallDisk:
    """A tmpfs of ``size_bytes`` mounted for one test (the machines run tests as root)."""

    def __init__(self, path: Path, size_bytes: int) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
        )
        self.filler = path / "filler"

    def fill(self, leave_bytes: int) -> None:
        """Write a filler file so that about ``leave_bytes`` stay free."""
        free = shutil.disk_usage(self.path).free
        with open(self.filler, "ab") as fh:
            fh.write(b"\0" * max(0, free - leave_bytes))

    def free(self) -> None:
        """Delete the filler."""
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        """Unmount."""
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """A 16 MiB tmpfs under the test's temporary folder (SQLite's WAL alone takes 4 MiB)."""
    if os.geteuid() != 0:
        pytest.fail("mounting a small tmpfs needs root (the CI machines run tests as root)")
    disk = SmallDisk(tmp_path / "small", 16 << 20)
    try:
        yield disk
    finally:
        disk.close()


# -- 1. back-pressure: spool full, the broker queues ------------------------------------------


def test_full_spool_holds_back_and_the_broker_queues_200k_readings(
    mosquitto: Mosquitto,
    own_influx: InfluxDB1,
    own_db: str,
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    per_message, messages = 10, 20_000  # 200,000 readings
    max_spool = 2 << 20  # 2 MiB: about 25,000 readings of line protocol
    inflight = 200
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        mqtt={"max_inflight": inflight},
        sinks={
            "influxdb_v1": {"url": own_influx.url, "db": own_db, "timeout_seconds": 5},
            "spool": {"dir": str(tmp_path / "spool"), "max_bytes": max_spool},
            "batch_size": 1000,
        },
    )
    msgs, expected = gateway_stream(mqtt_topic_prefix, 0, messages, per_message, time.time() - 3600)
    n = len(expected)
    assert n == 200_000
    agent = Agent(settings)
    worker = agent.pipeline.workers[0]
    held_seen: list[int] = []
    t_start = time.monotonic()
    own_influx.stop()
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(msgs)  # returns once the broker acknowledged every message
        pub.close()
        t_published = time.monotonic()

        def holding() -> bool:
            held_seen.append(worker.health(0).held_readings)
            return worker.held_batches > 0 and agent.pipeline.saturated()

        assert wait_until(holding, timeout_s=30), (worker.spool.bytes, worker.stats.dropped)
        text = agent_metrics(agent)
        assert metric(text, "greendc_spool_full", sink="influxdb_v1") == 1
        assert metric(text, "greendc_spool_held_readings", sink="influxdb_v1") > 0
        assert metric(text, "greendc_spool_free_bytes", sink="influxdb_v1") > 0
        # The broker has everything; the agent took only what the spool and the in-flight
        # window hold: the rest waits in the broker's queue for the persistent session.
        taken = agent.stats.readings_accepted
        assert taken < n // 2, taken
        assert worker.spool.bytes <= max_spool
        client = agent._client
        assert client is not None
        held_before = getattr(client, "held", 0)
        assert wait_until(lambda: getattr(client, "held", 0) > held_before + 10)
        assert agent.stats.readings_accepted == taken  # not reading while held

        own_influx.start()
        assert wait_until(lambda: worker.stats.written >= n, timeout_s=120), (
            worker.stats.written,
            agent.stats.readings_accepted,
        )
        t_stored = time.monotonic()
    finally:
        agent.stop()
    assert worker.stats.dropped == 0
    assert worker.held_batches == 0 and worker.spool.batches == 0
    # Memory bounded: never more held than the in-flight window (and one batch) allows.
    assert max(held_seen) <= 2 * inflight * per_message + 1000, max(held_seen)
    rows = influx_rows(own_influx, own_db)
    assert_exactly(rows, expected)
    assert influx_count(own_influx, own_db) == n
    print(
        f"\n200k readings: published in {t_published - t_start:.1f} s, all stored "
        f"{t_stored - t_start:.1f} s after start; max held {max(held_seen)} readings"
    )


# -- 2. the spool's file system full mid-stream, then freed ---------------------------------


def test_spool_disk_full_mid_stream_then_freed_loses_nothing(
    mosquitto: Mosquitto,
    own_influx: InfluxDB1,
    own_db: str,
    mqtt_topic_prefix: str,
    tmp_path: Path,
    small_disk: SmallDisk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    spool_dir = small_disk.path / "spool"
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        mqtt={"max_inflight": 200},
        sinks={
            "influxdb_v1": {"url": own_influx.url, "db": own_db, "timeout_seconds": 5},
            "spool": {"dir": str(spool_dir)},  # 512 MiB limit: the disk is the limit here
            "batch_size": 500,
        },
    )
    t0 = time.time() - 3600
    first, exp1 = gateway_stream(mqtt_topic_prefix, 0, 500, 10, t0)  # ~0.5 MB of lines
    second, exp2 = gateway_stream(mqtt_topic_prefix, 500, 1500, 10, t0)  # ~1.5 MB
    expected = {**exp1, **exp2}
    agent = Agent(settings)
    worker = agent.pipeline.workers[0]
    own_influx.stop()
    caplog.set_level(logging.WARNING, logger="greendc")
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(first)
        assert wait_until(lambda: agent.stats.readings_accepted == len(exp1))
        assert wait_until(lambda: worker.spool.batches > 0 and worker.held_batches == 0)
        small_disk.fill(leave_bytes=256 << 10)  # the disk fills mid-stream
        pub.publish(second)
        assert wait_until(lambda: worker.held_batches > 0, timeout_s=30)
        assert metric(agent_metrics(agent), "greendc_spool_full", sink="influxdb_v1") == 1
        refusals = [r.getMessage() for r in caplog.records if "ENOSPC" in r.getMessage()]
        assert refusals and str(spool_dir) in refusals[0] and "bytes free" in refusals[0]
        assert any(r.levelno == logging.ERROR for r in caplog.records if "ENOSPC" in r.message)
        assert agent.stats.readings_accepted < len(expected)

        small_disk.free()  # space returns: the spool takes the held batches, reading resumes
        assert wait_until(
            lambda: agent.stats.readings_accepted == len(expected) and worker.held_batches == 0,
            timeout_s=30,
        ), (agent.stats.readings_accepted, worker.held_batches)
        assert worker.stats.written == 0  # all of it on the spool's disk, none lost

        own_influx.start()
        assert wait_until(lambda: worker.stats.written == len(expected), timeout_s=60)
        pub.close()
    finally:
        agent.stop()
    assert worker.stats.dropped == 0
    assert_exactly(influx_rows(own_influx, own_db), expected)


# -- 3. the embedded store's disk full, then freed -----------------------------------------


def test_embedded_store_disk_full_then_freed_loses_nothing(
    mosquitto: Mosquitto,
    mqtt_topic_prefix: str,
    tmp_path: Path,
    small_disk: SmallDisk,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = small_disk.path / "store.sqlite"
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        sinks={"embedded": {"path": str(store)}, "batch_size": 500},
    )
    t0 = time.time() - 3600
    first, exp1 = gateway_stream(mqtt_topic_prefix, 0, 200, 10, t0)
    second, exp2 = gateway_stream(mqtt_topic_prefix, 200, 2000, 10, t0)  # ~2 MB in SQLite
    expected = {**exp1, **exp2}
    agent = Agent(settings)
    worker = agent.pipeline.workers[0]
    caplog.set_level(logging.WARNING, logger="greendc")
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(first)
        assert wait_until(lambda: worker.stats.written == len(exp1))
        small_disk.fill(leave_bytes=64 << 10)
        pub.publish(second)
        assert wait_until(lambda: worker.stats.failures > 0 and worker.spool.batches > 0)
        errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert any(str(store) in e and "bytes free" in e and "full" in e for e in errors), errors
        assert wait_until(lambda: agent.stats.readings_accepted == len(expected), timeout_s=30)

        small_disk.free()
        assert wait_until(
            lambda: worker.stats.written == len(expected) and worker.spool.batches == 0,
            timeout_s=60,
        ), (
            worker.stats.written,
            worker.spool.batches,
            worker.stats.failures,
            worker.held_batches,
            sorted(p.name for p in worker.spool.dir.iterdir()),
        )
        pub.close()
    finally:
        agent.stop()
    assert worker.stats.dropped == 0
    assert_exactly(store_rows(store), expected)


# -- 4. the system clock steps by +1 h and -1 h ---------------------------------------------


class SteppingClock:
    """The system clock plus an offset the test changes (an NTP step)."""

    def __init__(self) -> None:
        self.offset_s = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset_s


def test_clock_steps_change_no_timestamp_and_reject_nothing(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    settings = make_settings(
        mosquitto.url, mqtt_topic_prefix, tmp_path, sinks={"embedded": {"path": str(store)}}
    )
    clock = SteppingClock()
    agent = Agent(settings, clock=clock, monotonic=time.monotonic)
    t0 = time.time() - 60  # devices with correct clocks, readings a minute old
    parts = [gateway_stream(mqtt_topic_prefix, k * 100, 100, 10, t0 + k) for k in range(3)]
    expected: dict[Key, float] = {}
    for _, exp in parts:
        expected.update(exp)
    agent.start()
    try:
        assert agent.wait_connected(10)
        pub = Publisher(mosquitto.host, mosquitto.port)
        for (msgs, _), offset in zip(parts, (0.0, 3600.0, -3600.0), strict=True):
            clock.offset_s = offset
            before = agent.stats.messages_received
            pub.publish(msgs)
            assert wait_until(lambda m=msgs, b=before: agent.stats.messages_received == b + len(m))
            # Every meter heard just now is live, whatever the system clock says.
            assert len(agent.snapshot().meters) == len(METERS)
        pub.close()
        worker = agent.pipeline.workers[0]
        assert wait_until(lambda: worker.stats.written == len(expected))
    finally:
        agent.stop()
    assert dict(agent.stats.rejections) == {} or sum(agent.stats.rejections.values()) == 0
    assert_exactly(store_rows(store), expected)  # device timestamps exactly as sent


# -- 5. one broker of two stops mid-stream ----------------------------------------------------


def test_one_broker_of_two_stopped_mid_stream_all_stored(
    mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    store = tmp_path / "store.sqlite"
    t0 = time.time() - 3600
    # max_inflight 200: a batch is flushed (and acknowledged) at every 100 messages, so the
    # last 50 of part A are still in memory, unacknowledged, when the first broker stops.
    # Part B goes to the second broker only once the agent is subscribed there: a broker
    # keeps messages only for sessions it knows (see the README on fail-over).
    part_a, exp_a = gateway_stream(mqtt_topic_prefix, 0, 350, 10, t0)
    part_b, exp_b = gateway_stream(mqtt_topic_prefix, 350, 350, 10, t0)
    marker, exp_m = gateway_stream(mqtt_topic_prefix, 700, 1, 10, t0)
    expected = {**exp_a, **exp_b, **exp_m}
    with Mosquitto() as first, Mosquitto() as second:
        settings = make_settings(
            first.url,
            mqtt_topic_prefix,
            tmp_path,
            mqtt={
                "fallback_urls": [second.url],
                "reconnect_max_seconds": 1,
                "max_inflight": 200,
            },
            sinks={
                "embedded": {"path": str(store)},
                "batch_size": 100_000,
                "flush_interval_seconds": 60,
            },
        )
        agent = Agent(settings)
        worker = agent.pipeline.workers[0]
        seen: set[Key] = set()
        agent.add_observer(lambda rs: seen.update((r.site, r.meter, r.ts_ms) for r in rs))
        agent.start()
        a_addr, b_addr = f"{first.host}:{first.port}", f"{second.host}:{second.port}"
        try:
            assert agent.wait_connected(10)
            assert agent.broker == a_addr
            pub = PersistentPublisher(first, f"pub-a-{os.getpid()}")
            pub.publish(part_a)
            assert wait_until(pub.all_acked)
            pub.close()
            assert wait_until(lambda: agent.stats.messages_received == len(part_a))
            first.stop()
            assert wait_until(lambda: agent.broker == b_addr and agent.wait_connected(0))
            pub_b = Publisher(second.host, second.port)
            pub_b.publish(part_b)
            pub_b.close()
            assert wait_until(lambda: {k for k, _ in store_rows(store)} >= set(exp_b))
            # The last 50 messages of part A were stored with part B's first batch, but
            # their acknowledgements were due on a connection that is gone: the first
            # broker's session still holds them. The second broker goes, the first is
            # back: its session redelivers them (stored again, landing once).
            first.start()
            second.stop()
            assert wait_until(
                lambda: agent.broker == a_addr and agent.wait_connected(0), timeout_s=30
            ), agent.broker
            # The broker sends a session's queued messages before anything newer: once a
            # marker published now arrives, the redelivery is complete.
            pub_m = Publisher(first.host, first.port)
            pub_m.publish(marker)
            pub_m.close()
            assert wait_until(lambda: set(exp_m) <= seen)
            # At least once: the 50 unacknowledged, and any whose acknowledgement the
            # stopped broker had not recorded yet.
            assert agent.stats.messages_received >= len(part_a) + len(part_b) + 50 + 1
            assert agent.stats.mqtt_connections >= 3
        finally:
            agent.stop()  # flushes the redelivered 50
    assert worker.stats.dropped == 0
    assert_exactly(store_rows(store), expected)


# -- 6. quiet when all is well; the shutdown order ---------------------------------------------


def test_sigterm_and_reconnect_are_quiet_and_stop_acknowledges_before_disconnecting(
    mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    """An ordinary broker restart and SIGTERM log no ERROR; stop sends the acknowledgement.

    The one message sits in memory, unacknowledged (large batch, long flush timer), when
    SIGTERM arrives. Stop must read no more, flush, acknowledge, then disconnect: the next
    run with the same persistent session then gets nothing redelivered.
    """
    p = mqtt_topic_prefix
    port = free_port()
    with Mosquitto() as broker:
        config = {
            "mqtt": {
                "url": broker.url,
                "client_id": f"quiet-{p.replace('/', '-')}",
                "reconnect_max_seconds": 1,
            },
            "mappings": [{"topic": f"{p}/greendc/{{site}}/{{meter}}"}],
            "sinks": {
                "embedded": {"path": str(tmp_path / "store.sqlite")},
                "spool": {"dir": str(tmp_path / "spool")},
                "batch_size": 100_000,
                "flush_interval_seconds": 60,
            },
            "metrics": {"port": port},
            "sites": SITES,
        }
        cfg = tmp_path / "collector.yaml"
        cfg.write_text(json.dumps(config))
        now = time.time()
        logs = [tmp_path / "run1.log", tmp_path / "run2.log"]

        proc = _start_collector(cfg, tmp_path, logs[0])
        try:
            assert wait_until(
                lambda: _metric_now(port, "greendc_agent_mqtt_connected") == 1, timeout_s=30
            ), logs[0].read_text()[-2000:]
            broker.restart()  # an ordinary reconnect
            assert wait_until(
                lambda: (
                    _metric_now(port, "greendc_agent_mqtt_reconnects_total") == 1
                    and _metric_now(port, "greendc_agent_mqtt_connected") == 1
                ),
                timeout_s=30,
            ), logs[0].read_text()[-2000:]
            pub = Publisher(broker.host, broker.port)
            pub.publish([(f"{p}/greendc/sg1/incomer", {"ts": now, "power_w": 1.0})])
            pub.close()
            assert wait_until(
                lambda: _metric_now(port, "greendc_agent_messages_received_total") == 1
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)

        proc = _start_collector(cfg, tmp_path, logs[1])
        try:
            assert wait_until(
                lambda: _metric_now(port, "greendc_agent_mqtt_connected") == 1, timeout_s=30
            ), logs[1].read_text()[-2000:]
            pub = Publisher(broker.host, broker.port)
            pub.publish([(f"{p}/greendc/sg1/solar", {"ts": now, "power_w": 2.0})])
            pub.close()
            # A session's queued messages come before newer ones: once the new one is live,
            # any redelivery would have been counted.
            assert wait_until(
                lambda: _metric_now(port, "greendc_meter_power_watts", meter="solar") == 2.0
            ), logs[1].read_text()[-2000:]
            assert _metric_now(port, "greendc_agent_messages_received_total") == 1
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    keys = {k for k, _ in store_rows(tmp_path / "store.sqlite")}
    assert {(m, ts) for _s, m, ts in keys} == {
        ("incomer", round(now * 1000)),
        ("solar", round(now * 1000)),
    }
    for log in logs:
        text = log.read_text()
        assert "stopped: 1 messages" in text, text[-2000:]
        assert " ERROR " not in text and "Traceback" not in text, text[-3000:]
    assert "reconnecting with backoff" in logs[0].read_text()  # the reconnect is reported
