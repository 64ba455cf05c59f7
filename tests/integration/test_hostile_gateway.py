"""One compromised gateway must not take the collector down: memory, the network thread.

Against the real Mosquitto with the shipped config/mosquitto/mosquitto.conf and ACL (the
gateway ``gw-sg1`` may publish only under ``greendc/sg1/``):

- the gateway publishes thousands of messages on distinct 60 KB topics, then a payload far
  larger than ``validation.max_payload_bytes``: the collector (``greendc collect``, a real
  process) keeps its resident memory, read from /proc, within a stated bound, stays
  connected, and the next good reading is stored. Before the fix, 30,000 such topics grew it
  from 43 MB to 3.65 GB.
- a message whose handling raises (an observer of the agent fails on it) makes the agent
  report itself disconnected within seconds and reconnect; the broker redelivers it, it
  raises again, and it ends in the dead-letter topic, acknowledged, while good readings
  keep arriving. Both receive paths (greendc's buffered reader and paho's own) are tested.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client.parser import text_string_to_metric_families

from greendc.collector.agent import POISON_TRIES, Agent
from greendc.config import parse_config
from greendc.model import Reading
from greendc.store import EmbeddedStore
from tests.support.builders import SITES
from tests.support.mqtt import Publisher
from tests.support.polling import wait_until
from tests.support.procfs import proc_peak_rss_mib, proc_rss_kib
from tests.support.servers import (
    ProductionMosquitto,
    free_port,
    generate_compose_secrets,
    http_request,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
GREENDC = ROOT / ".venv" / "bin" / "greendc"
GATEWAY = ("gw-sg1", f"gw-{secrets.token_hex(8)}")
OPERATOR = ("operator", f"op-{secrets.token_hex(8)}")
DEAD_LETTERS = "greendc-deadletter/test"

FLOOD_MESSAGES = 3_000
TOPIC_PAD_BYTES = 60_000
MAX_PAYLOAD_BYTES = 16_384
OVERSIZED_BYTES = 900_000  # 55 x max_payload_bytes; under the broker's 1 MiB packet limit
# The stated bound: the collector's resident memory may grow by at most this much over the
# flood (peak, VmHWM). Caching the topics alone would take 3,000 x 60 KB = 180 MB.
RSS_GROWTH_BOUND_BYTES = 64 * 1024 * 1024


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProductionMosquitto]:
    secrets_dir = generate_compose_secrets(tmp_path_factory.mktemp("compose") / "secrets")
    users = dict([GATEWAY, OPERATOR])
    workdir = tmp_path_factory.mktemp("production-broker")
    with ProductionMosquitto(secrets_dir, users, workdir=workdir) as server:
        yield server


def _config(broker: ProductionMosquitto, tmp: Path, **mqtt_extra: Any) -> dict[str, Any]:
    pw_file = tmp / "mqtt_password"
    pw_file.write_text(broker.password("collector") + "\n")
    return {
        "mqtt": {
            "url": broker.url,
            "client_id": f"collector-{secrets.token_hex(4)}",
            "username": "collector",
            "password_file": str(pw_file),
            "dead_letter_topic": DEAD_LETTERS,
            "reconnect_min_seconds": 1,
            "reconnect_max_seconds": 2,
            **mqtt_extra,
        },
        "validation": {"max_payload_bytes": MAX_PAYLOAD_BYTES},
        "sinks": {
            "embedded": {"path": str(tmp / "store.sqlite")},
            "spool": {"dir": str(tmp / "spool")},
            "flush_interval_seconds": 0.2,
        },
        "sites": SITES,
    }


class DeadLetters:
    """The operator account reading the collectors' dead-letter topic."""

    def __init__(self, broker: ProductionMosquitto) -> None:
        self.received: list[dict[str, Any]] = []
        self.raw_bytes = 0
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"operator-{secrets.token_hex(3)}",
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(*OPERATOR)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_a: self._subscribed.set()
        self.client.on_connect = lambda c, *_a: c.subscribe(f"{DEAD_LETTERS}/#", qos=1)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "the operator could not subscribe to dead letters"

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        self.raw_bytes = max(self.raw_bytes, len(msg.payload) + len(msg.topic))
        self.received.append(json.loads(msg.payload))

    def reasons(self) -> list[str]:
        return [r["reason"] for d in self.received for r in d["rejections"]]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _gateway(broker: ProductionMosquitto) -> Publisher:
    return Publisher(broker.host, broker.port, f"gw-sg1-{secrets.token_hex(3)}", *GATEWAY)


# -- the collector as a process ----------------------------------------------------------------
class CollectorProcess:
    """``greendc collect`` with its /metrics on a free port and its memory read from /proc."""

    def __init__(self, config: dict[str, Any], tmp: Path) -> None:
        self.port = free_port()
        config = {**config, "metrics": {"port": self.port}}
        path = tmp / "collector.json"
        path.write_text(json.dumps(config))
        self.log = tmp / "collector.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENDC_")}
        with self.log.open("wb") as fh:
            self.proc = subprocess.Popen(
                [str(GREENDC), "collect", "--config", str(path)],
                cwd=tmp,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def rss_mib(self) -> float:
        """Resident memory now (VmRSS), MiB."""
        return proc_rss_kib(self.proc.pid) / 1024

    def peak_rss_mib(self) -> float:
        """Peak resident memory so far (VmHWM), MiB."""
        return proc_peak_rss_mib(self.proc.pid)

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        try:
            status, body = http_request(f"http://127.0.0.1:{self.port}/metrics", timeout_seconds=5)
        except OSError:
            return {}
        if status != 200:
            return {}
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode())
            for s in fam.samples
        }

    def value(self, name: str, **labels: str) -> float:
        return self.metrics().get((name, tuple(sorted(labels.items()))), 0.0)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                assert self.proc.wait(30) == 0, self.tail()
            finally:
                if self.proc.poll() is None:
                    self.proc.kill()
                    self.proc.wait(10)


def _stored(path: Path, meter: str) -> list[Reading]:
    store = EmbeddedStore(path)
    try:
        return [r for r in store.readings() if r.meter == meter]
    finally:
        store.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_flood_of_60kb_topics_and_an_oversized_payload_leave_memory_bounded(
    broker: ProductionMosquitto, tmp_path: Path, protocol: str
) -> None:
    """MQTT 5: the broker keeps the oversized payload back (our Maximum Packet Size).
    MQTT 3.1.1 has no such limit: the reader skips it unread and acknowledges it."""
    collector = CollectorProcess(_config(broker, tmp_path, protocol=protocol), tmp_path)
    dead = DeadLetters(broker)
    gateway = _gateway(broker)
    try:
        assert wait_until(
            lambda: collector.value("greendc_agent_mqtt_connected") == 1, timeout_s=30
        ), collector.tail()
        t0 = time.time()
        gateway.publish([("greendc/sg1/ups-1", {"ts": t0, "power_w": 1.0})])
        assert wait_until(lambda: collector.value("greendc_agent_readings_accepted_total") == 1)
        baseline_mib = collector.rss_mib()

        pad = "m" * TOPIC_PAD_BYTES
        flood = [(f"greendc/sg1/{i:06d}{pad}", {"power_w": 1.0}) for i in range(FLOOD_MESSAGES)]
        gateway.publish(flood)
        gateway.publish(
            [("greendc/sg1/ups-1", b'{"power_w": 2.0, "pad": "' + b"x" * OVERSIZED_BYTES + b'"}')]
        )

        assert wait_until(
            lambda: (
                collector.value("greendc_agent_rejections_total", reason="topic_too_long")
                == FLOOD_MESSAGES
            ),
            timeout_s=120,
        ), collector.tail()
        oversized_seen = 1 if protocol == "3.1.1" else 0
        assert wait_until(
            lambda: (
                collector.value("greendc_agent_rejections_total", reason="payload_too_large")
                == oversized_seen
            ),
            timeout_s=30,
        ), collector.tail()

        # The next good reading is stored.
        gateway.publish([("greendc/sg1/ups-1", {"ts": t0 + 1, "power_w": 3.0})])
        assert wait_until(
            lambda: collector.value("greendc_sink_readings_written_total", sink="embedded") == 2,
            timeout_s=30,
        ), collector.tail()

        peak_mib = collector.peak_rss_mib()
        now_mib = collector.rss_mib()
        growth = (peak_mib - baseline_mib) * 2**20
        print(
            f"\nMQTT {protocol}: RSS {baseline_mib:.1f} MiB before, peak "
            f"{peak_mib:.1f} MiB, {now_mib:.1f} MiB after {FLOOD_MESSAGES} "
            f"messages on {TOPIC_PAD_BYTES // 1000} KB topics and one {OVERSIZED_BYTES:,}-byte "
            f"payload"
        )
        assert growth < RSS_GROWTH_BOUND_BYTES, f"peak RSS grew by {growth / 2**20:.1f} MiB"
        m = collector.metrics()
        assert m[("greendc_agent_mqtt_connected", ())] == 1
        assert m[("greendc_agent_mqtt_reconnects_total", ())] == 0, "the flood cost a reconnect"
        assert m[("greendc_agent_mqtt_read_errors_total", ())] == 0

        # Dead letters were sent for the rejected topics, each cut to a bounded size.
        assert wait_until(lambda: len(dead.received) >= FLOOD_MESSAGES, timeout_s=60)
        assert dead.raw_bytes < 4096, f"a dead letter of {dead.raw_bytes} bytes"
        assert dead.received[0]["topic_chars"] > TOPIC_PAD_BYTES
        collector.stop()
        assert [r.fields["power_w"] for r in _stored(tmp_path / "store.sqlite", "ups-1")] == [
            1.0,
            3.0,
        ]
        log = collector.log.read_text(errors="replace")
        assert max(len(line) for line in log.splitlines()) < 2000, "a log line carries a topic"
    finally:
        gateway.close()
        dead.close()
        collector.stop()


# -- a read path that raises ---------------------------------------------------------------------
POISON_W = 666.0


@pytest.mark.parametrize("receive", ["buffered", "paho"])
def test_a_message_that_crashes_the_reader_is_retried_once_then_dead_lettered(
    broker: ProductionMosquitto, tmp_path: Path, receive: str
) -> None:
    settings = parse_config(_config(broker, tmp_path, receive=receive), env={})
    agent = Agent(settings)
    seen_poison: list[float] = []

    def fragile_observer(readings: list[Reading]) -> None:
        # A bug that only one message triggers, in code the network thread runs.
        if any(r.fields.get("power_w") == POISON_W for r in readings):
            seen_poison.append(time.monotonic())
            raise RuntimeError("observer bug")

    agent.add_observer(fragile_observer)
    dead = DeadLetters(broker)
    gateway = _gateway(broker)
    agent.start()
    try:
        assert agent.wait_connected(20)
        t0 = time.time()
        gateway.publish([("greendc/sg1/ups-1", {"ts": t0, "power_w": 1.0})])
        # Stored and so acknowledged: the reconnect below does not bring it back.
        assert wait_until(lambda: agent.snapshot().health.sinks[0].written == 1)

        gateway.publish([("greendc/sg1/ups-2", {"ts": t0, "power_w": POISON_W})])
        assert wait_until(lambda: seen_poison, timeout_s=10)
        # Disconnected within seconds of the failure (the reconnect waits at least 1 s).
        assert wait_until(
            lambda: not agent.snapshot().health.mqtt_connected, timeout_s=5, interval_s=0.01
        ), "the agent kept reporting itself connected after its read path failed"
        # The broker redelivers it on the new session; the second failure dead-letters it.
        assert wait_until(lambda: "poison_message" in dead.reasons(), timeout_s=30)
        assert len(seen_poison) == POISON_TRIES
        letter = next(d for d in dead.received if d["rejections"][0]["reason"] == "poison_message")
        assert letter["topic"] == "greendc/sg1/ups-2"
        assert "RuntimeError: observer bug" in letter["rejections"][0]["detail"]
        assert json.loads(letter["payload"])["power_w"] == POISON_W

        # Recovered: connected, and good readings flow again.
        assert wait_until(lambda: agent.snapshot().health.mqtt_connected, timeout_s=10)
        gateway.publish([("greendc/sg1/ups-1", {"ts": t0 + 1, "power_w": 2.0})])
        # Stored, hence acknowledged (the poison message with them) before we disconnect.
        assert wait_until(lambda: agent.snapshot().health.sinks[0].written == 2)
        h = agent.snapshot().health
        assert h.readings_accepted == 2, "the poison message's reading counted as accepted"
        assert h.mqtt_read_errors == 1, "only the first failure drops the connection"
        assert h.rejections["poison_message"] == 1
        assert h.mqtt_reconnects == 1
    finally:
        gateway.close()
        dead.close()
        agent.stop()
    # Acknowledged: a new session of the same client gets nothing redelivered.
    again = Agent(settings)
    again.add_observer(fragile_observer)
    again.start()
    try:
        assert again.wait_connected(20)
        gateway = _gateway(broker)
        try:
            gateway.publish([("greendc/sg1/ups-1", {"ts": time.time(), "power_w": 3.0})])
        finally:
            gateway.close()
        assert wait_until(lambda: again.snapshot().health.readings_accepted == 1), (
            again.snapshot().health
        )
        assert len(seen_poison) == POISON_TRIES, "the poison message was redelivered"
        assert again.snapshot().health.messages_received == 1
    finally:
        again.stop()
