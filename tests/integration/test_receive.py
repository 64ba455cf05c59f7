"""Both MQTT read paths against a real Mosquitto: every message stored and acknowledged.

The buffered path (``mqtt.receive: buffered``, collector/mqttio.py) parses PUBLISH packets
itself and acknowledges a stored batch with one write; paho's own reader is the fallback.
The broker's in-flight window is far smaller than the burst, so a missing PUBACK stalls
the stream; and after the agent leaves, a client resuming its session must receive nothing,
which is only true when the broker got a PUBACK for every message.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from greendc.collector.agent import Agent
from greendc.collector.mqttio import BufferedClient, encode_publish
from tests.helpers import Publisher, make_settings, wait_until
from tests.servers import Mosquitto

pytestmark = pytest.mark.integration


def _messages(prefix: str, t0: float) -> tuple[list[tuple[str, Any]], int]:
    msgs: list[tuple[str, Any]] = []
    meters = ["incomer", "ups-1", "ups-2", "chiller", "solar"]
    for i in range(600):
        ts = t0 + i * 0.25
        msgs.append((f"{prefix}/greendc/sg1/{meters[i % 5]}", {"ts": ts, "power_w": 500.0 + i}))
    for b in range(10):
        items = [{"meter": "pdu-a", "ts": t0 + b * 20 + j * 0.01, "power_w": j} for j in range(30)]
        msgs.append((f"{prefix}/greendc/jhr1", items))
    return msgs, 600 + 10 * 30


def _redelivered(broker: Mosquitto, client_id: str, protocol: str, prefix: str) -> int:
    """Resume the agent's session and count what the broker still had for it."""
    got: list[str] = []
    v5 = protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else False,
    )
    client.on_message = lambda _c, _u, msg: got.append(msg.topic)
    session = threading.Event()
    client.on_connect = lambda _c, _u, flags, _r, _p: (
        session.set() if flags.session_present else None
    )
    props = None
    kwargs: dict[str, Any] = {}
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        kwargs["clean_start"] = False
    client.connect(broker.host, broker.port, properties=props, **kwargs)
    client.loop_start()
    try:
        assert session.wait(10), "the broker did not keep the agent's session"
        time.sleep(1.5)  # redelivery of in-flight messages is immediate on resume
    finally:
        client.disconnect()
        client.loop_stop()
    return len([t for t in got if t.startswith(prefix)])


@pytest.mark.parametrize(
    ("receive", "protocol", "ack"),
    [
        ("buffered", "5", "durable"),
        ("buffered", "3.1.1", "durable"),
        ("buffered", "5", "receipt"),
        ("paho", "5", "durable"),  # paho's own reader: the fallback when the probe fails
        ("paho", "3.1.1", "receipt"),
    ],
)
def test_every_message_is_stored_once_and_acknowledged(
    receive: str,
    protocol: str,
    ack: str,
    mosquitto: Mosquitto,
    mqtt_topic_prefix: str,
    tmp_path: Path,
) -> None:
    client_id = f"recv-{receive}-{protocol}-{ack}-{mqtt_topic_prefix.replace('/', '-')}"
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        client_id=client_id,
        mqtt={
            "receive": receive,
            "protocol": protocol,
            "max_inflight": 50,  # far below the burst: missing acks would stall it
            "session_expiry_seconds": 300,
            "ack": ack,  # receipt: acknowledged on arrival (by the reader, not the sinks)
        },
    )
    msgs, n = _messages(mqtt_topic_prefix, time.time() - 600)
    agent = Agent(settings)
    agent.start()
    try:
        assert agent.wait_connected(10)
        assert isinstance(agent._client, BufferedClient) == (receive == "buffered")
        pub = Publisher(mosquitto.host, mosquitto.port)
        pub.publish(msgs)
        pub.close()
        assert wait_until(lambda: agent.stats.readings_accepted == n), agent.stats
        written = lambda: agent.pipeline.workers[0].stats.written  # noqa: E731
        assert wait_until(lambda: written() == n), written()
        time.sleep(0.5)  # the last PUBACKs leave on the next turn of the network loop
        if receive == "buffered":
            assert isinstance(agent._client, BufferedClient)
            assert agent._client.published_fast == len(msgs)
    finally:
        agent.stop()
    assert dict(agent.stats.rejections) == {}
    assert agent.stats.messages_received == len(msgs)
    assert _redelivered(mosquitto, client_id, protocol, mqtt_topic_prefix) == 0


class _SlowSink:
    """Stores nothing, slowly: a sink far behind the broker."""

    name = "slow"
    accepts_lines = False

    def write(self, _readings: object) -> None:
        time.sleep(0.01)

    def close(self) -> None:
        pass


def test_a_broker_ignoring_receive_maximum_cannot_flood_the_agent(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    """Mosquitto 2.0.11 sends past the Receive Maximum once PUBACKs flow (#2301).

    A backlog waits in the agent's persistent session; behind a slow sink the agent holds
    off reading at twice its window, so what it has taken but not stored stays bounded
    (plus at most one 64 KiB read) instead of growing with the backlog.
    """
    window = 50
    settings = make_settings(
        mosquitto.url,
        mqtt_topic_prefix,
        tmp_path,
        client_id=f"flood-{mqtt_topic_prefix.replace('/', '-')}",
        mqtt={"max_inflight": window, "session_expiry_seconds": 300},
    )
    first = Agent(settings, sinks=[])
    first.start()
    assert first.wait_connected(10)
    first.stop()  # the session (and its subscription) stays on the broker
    n = 5_000
    topic = f"{mqtt_topic_prefix}/greendc/sg1/incomer"
    t0 = time.time() - 3600
    msgs = [(topic, {"ts": round(t0 + i * 0.1, 1), "power_w": 1.0}) for i in range(n)]
    pub = Publisher(mosquitto.host, mosquitto.port)
    pub.publish(msgs)
    pub.close()
    packet = encode_publish(topic.encode(), json.dumps(msgs[-1][1]).encode(), 1, 1, b"")
    agent = Agent(settings, sinks=[_SlowSink()])  # type: ignore[list-item]
    agent.start()
    try:
        most = 0
        deadline = time.monotonic() + 90
        while agent.stats.messages_received < n and time.monotonic() < deadline:
            most = max(most, agent._taken - agent._settled)
            time.sleep(0.005)
        assert agent.stats.messages_received == n
        # twice the window, plus what one 64 KiB read can hold of these packets
        assert most <= 2 * window + 65536 // len(packet) + 1, most
        client = agent._client
        assert isinstance(client, BufferedClient)
        assert client.held > 0  # the broker did over-send, and the agent held off
    finally:
        agent.stop()
