"""MQTT for tests and benchmarks: a QoS 1 paho publisher, packet encoders, a burst publisher.

:class:`Publisher` is a paho-mqtt 2.x client that waits for every PUBACK (tests).
:func:`encode_connect` and greendc's own :func:`~greendc.collector.mqttio.encode_publish`
build packets; :class:`BurstPublisher` writes a pre-encoded burst from a raw socket, so the
publisher costs almost no CPU and is the same load for every consumer measured (bench).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from greendc.collector.mqttio import encode_publish, encode_varint


class BurstError(RuntimeError):
    """The broker refused the burst publisher or closed its connection."""


class Publisher:
    """A paho-mqtt 2.x QoS 1 publisher that waits for every PUBACK."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str = "",
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.max_inflight_messages_set(1000)
        self.client.connect(host, port)
        self.client.loop_start()

    def publish(self, messages: Iterable[tuple[str, Any]], qos: int = 1) -> int:
        """Publish (topic, payload) pairs, JSON-encoding non-bytes; wait for all acks."""
        infos = []
        for topic, payload in messages:
            body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            infos.append(self.client.publish(topic, body, qos=qos))
            if len(infos) % 500 == 0:
                infos[-1].wait_for_publish(30)
        for info in infos:
            info.wait_for_publish(30)
        return len(infos)

    def close(self) -> None:
        """Disconnect."""
        self.client.disconnect()
        self.client.loop_stop()


def encode_connect(client_id: str, keepalive_seconds: int = 600) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session."""
    cid = client_id.encode()
    body = (
        b"\x00\x04MQTT\x04\x02"
        + keepalive_seconds.to_bytes(2, "big")
        + len(cid).to_bytes(2, "big")
        + cid
    )
    return b"\x10" + encode_varint(len(body)) + body


class BurstPublisher:
    """Writes a pre-encoded burst of (topic, payload) from a raw socket.

    Everything is encoded up front, so publishing costs (almost) no CPU; at QoS 1 at most
    ``window`` PUBLISHes are unacknowledged at once (paho refuses more than 65,535).
    ``run`` records ``seconds`` and any ``error`` instead of raising, so it can run on a
    thread while the caller measures the consumer.
    """

    CHUNK = 500

    def __init__(self, items: Sequence[tuple[bytes, bytes]], qos: int, window: int) -> None:
        """Encode every PUBLISH now."""
        self.qos = qos
        self.window = window
        self.total = len(items)
        packets = [encode_publish(t, p, qos, (i % 65535) + 1) for i, (t, p) in enumerate(items)]
        self.chunks = [
            (len(packets[i : i + self.CHUNK]), b"".join(packets[i : i + self.CHUNK]))
            for i in range(0, len(packets), self.CHUNK)
        ]
        self.seconds = 0.0
        self.error: BaseException | None = None

    def run(self, host: str, port: int) -> None:
        """Connect, publish everything (QoS 1: windowed on PUBACKs), disconnect."""
        began = time.monotonic()
        try:
            with socket.create_connection((host, port)) as sock:
                sock.sendall(encode_connect(f"bench-pub-{time.time_ns()}"))
                connack = sock.recv(4)
                if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
                    raise BurstError(f"broker refused the publisher: {connack!r}")
                sent = 0
                acked_bytes = 0
                for n, chunk in self.chunks:
                    while self.qos and sent - acked_bytes // 4 > self.window - n:
                        acked_bytes += len(sock.recv(65536))
                    sock.sendall(chunk)
                    sent += n
                while self.qos and acked_bytes // 4 < sent:
                    data = sock.recv(65536)
                    if not data:
                        raise BurstError("broker closed the publisher's connection")
                    acked_bytes += len(data)
                sock.sendall(b"\xe0\x00")
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - began


__all__ = ["BurstError", "BurstPublisher", "Publisher", "encode_connect", "encode_publish"]
