"""Readings out: native greendc JSON over MQTT at QoS 1 on a persistent session (paho 2.x).

The bridge runs at the edge: while the broker is unreachable paho keeps the QoS 1 messages
(the queue is unbounded in count, bounded by memory) and sends them when it reconnects; the
broker then holds them for the collector's persistent session.
"""

from __future__ import annotations

import logging
import ssl
import threading
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from greendc.collector.bridge.health import Health
from greendc.config import MqttSettings

log = logging.getLogger("greendc.bridge.mqtt")


class Publisher:
    """Publishes ``{"ts": ..., "power_w": ...}`` to ``<prefix>/<site>/<meter>``."""

    def __init__(self, mqtt_settings: MqttSettings, client_id: str, prefix: str, health: Health):
        self.m = mqtt_settings
        self.prefix = prefix
        self.health = health
        self._v5 = mqtt_settings.protocol != "3.1.1"
        self.connected = threading.Event()
        # Counts only, no lock around publish(): paho calls on_publish holding its own
        # message lock, so holding ours across publish() could deadlock the two threads.
        self._published = 0
        self._acked = 0
        self._drained = threading.Condition()
        m = mqtt_settings
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else m.clean_start,
        )
        self.client.max_inflight_messages_set(m.max_inflight)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(
            min_delay=max(1, int(m.reconnect_min_seconds)), max_delay=int(m.reconnect_max_seconds)
        )
        if m.username:
            self.client.username_pw_set(
                m.username, m.password.get_secret_value() if m.password else None
            )
        if m.use_tls:
            tls = m.tls
            self.client.tls_set(
                ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                keyfile=str(tls.key_file) if tls and tls.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            if tls and tls.insecure_skip_verify:
                self.client.tls_insecure_set(True)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.enable_logger(logging.getLogger("greendc.bridge.paho"))

    def start(self) -> None:
        """Connect in the background (paho's network thread reconnects on its own)."""
        kwargs: dict[str, Any] = {}
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.m.session_expiry_seconds
            kwargs = {"properties": props, "clean_start": self.m.clean_start}
        self.client.connect_async(self.m.host, self.m.port, self.m.keepalive_seconds, **kwargs)
        self.client.loop_start()

    def publish(self, site: str, meter: str, ts: float, fields: dict[str, float]) -> None:
        """Queue one reading at QoS 1 (thread-safe; never blocks on the network)."""
        payload = orjson.dumps({"ts": ts, **fields})
        with self._drained:
            self._published += 1
        self.client.publish(f"{self.prefix}/{site}/{meter}", payload, qos=1)
        self.health.add_published(1)

    def wait_drained(self, timeout_s: float) -> bool:
        """Wait until the broker acknowledged everything published; False on timeout."""
        with self._drained:
            return self._drained.wait_for(lambda: self._acked >= self._published, timeout_s)

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Give in-flight readings a moment to be acknowledged, then disconnect."""
        if self.connected.is_set() and not self.wait_drained(drain_timeout_s):
            log.warning(
                "stopping with %d readings not yet acknowledged", self._published - self._acked
            )
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        if rc.is_failure:
            log.error("broker refused the connection: %s", rc)
            return
        log.info("connected to %s:%s", self.m.host, self.m.port)
        self.connected.set()
        self.health.mqtt_connected = True

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, rc: Any, _p: Any = None) -> None:
        self.connected.clear()
        self.health.mqtt_connected = False
        if rc.value != 0:
            log.warning("disconnected from the broker (%s); paho reconnects", rc)

    def _on_publish(self, _c: mqtt.Client, _u: Any, mid: int, _rc: Any, _p: Any) -> None:
        # Every QoS 1 message this client sends is a reading, so each PUBACK is one.
        with self._drained:
            self._acked += 1
            if self._acked >= self._published:
                self._drained.notify_all()
        self.health.add_acknowledged(1)
