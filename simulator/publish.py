"""Publishing the simulation over MQTT, paced against the wall clock.

:func:`run` drives :func:`greendc.simulator.model.iter_steps`, applies fault injection, encodes
each site-step in the chosen style and hands the messages to a :class:`Publisher`: by
default an :class:`MqttPublisher` (paho-mqtt 2.x, QoS 1) that never has more than
``max_inflight`` messages unacknowledged, so a fast-forward run cannot exhaust paho's
65,535 message ids or the broker's queue.
"""

from __future__ import annotations

import logging
import math
import ssl
import threading
import time
from types import TracebackType
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from greendc._errors import GreendcError
from greendc.config import MqttSettings, Settings
from greendc.simulator.faults import FaultInjector
from greendc.simulator.model import iter_steps
from greendc.simulator.options import SimOptions, SimStats
from greendc.simulator.styles import Encoder

log = logging.getLogger("greendc.simulator")


class SimulatorError(GreendcError):
    """The simulator could not reach or publish to the broker."""


class Publisher(Protocol):
    """Where :func:`run` sends messages (the MQTT client, or a list in tests)."""

    def publish(self, topic: str, payload: bytes, stop: threading.Event) -> bool:
        """Send one message; False if stopped before it could be sent."""
        ...

    def flush(self, timeout_seconds: float) -> int:
        """Wait for outstanding acknowledgements; return how many are still missing."""
        ...

    @property
    def acked(self) -> int:
        """Messages the receiver has acknowledged so far."""
        ...


class MqttPublisher:
    """A paho-mqtt 2.x client with a bound on unacknowledged messages.

    Use as a context manager: entering connects (waiting for CONNACK), leaving
    disconnects. ``publish`` blocks while ``max_inflight`` messages await their PUBACK.
    """

    def __init__(self, mqtt_settings: MqttSettings, options: SimOptions) -> None:
        self._settings = mqtt_settings
        self._qos = options.qos
        self._connect_timeout_s = options.connect_timeout_seconds
        self._window = threading.BoundedSemaphore(options.max_inflight)
        self._max_inflight = options.max_inflight
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self._acked = 0
        self._outstanding = 0
        protocol = (
            mqtt.MQTTProtocolVersion.MQTTv5
            if mqtt_settings.protocol == "5"
            else mqtt.MQTTProtocolVersion.MQTTv311
        )
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=options.client_id, protocol=protocol
        )
        # paho's own window matches ours, and it must never refuse a publish for its queue.
        self._client.max_inflight_messages_set(options.max_inflight)
        self._client.max_queued_messages_set(0)
        self._client.reconnect_delay_set(
            min_delay=max(1, int(mqtt_settings.reconnect_min_seconds)),
            max_delay=max(1, int(mqtt_settings.reconnect_max_seconds)),
        )
        if mqtt_settings.username is not None:
            password = mqtt_settings.password
            self._client.username_pw_set(
                mqtt_settings.username,
                password.get_secret_value() if password is not None else None,
            )
        if mqtt_settings.use_tls:
            tls = mqtt_settings.tls
            self._client.tls_set(
                ca_certs=str(tls.ca_file) if tls and tls.ca_file else None,
                certfile=str(tls.cert_file) if tls and tls.cert_file else None,
                keyfile=str(tls.key_file) if tls and tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if tls and tls.insecure_skip_verify else None,
            )
            if tls and tls.insecure_skip_verify:
                self._client.tls_insecure_set(True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        if reason.is_failure:
            self._connect_error = str(reason)
            log.warning("broker refused the simulator's connection: %s", reason)
        else:
            self._connect_error = None
            self._connected.set()
            log.info("simulator connected to %s:%s", self._settings.host, self._settings.port)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, properties: Any
    ) -> None:
        self._connected.clear()
        if reason.is_failure:
            log.warning("simulator lost the broker (%s); paho reconnects", reason)

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, properties: Any
    ) -> None:
        with self._lock:
            self._acked += 1
            self._outstanding -= 1
        self._window.release()

    def __enter__(self) -> MqttPublisher:
        s = self._settings
        try:
            self._client.connect_async(s.host, s.port, keepalive=s.keepalive_seconds)
        except OSError as exc:
            raise SimulatorError(f"cannot connect to the broker at {s.url}: {exc}") from exc
        self._client.loop_start()
        # paho names its network thread generically; a named one is findable in a dump.
        thread = getattr(self._client, "_thread", None)
        if isinstance(thread, threading.Thread):
            thread.name = "greendc-simulator-mqtt"
        if not self._connected.wait(self._connect_timeout_s):
            self._client.loop_stop()
            why = self._connect_error or "no answer"
            raise SimulatorError(
                f"cannot connect to the broker at {s.url} within "
                f"{self._connect_timeout_s:g} s ({why}); is it running? set mqtt.url or "
                "GREENDC_MQTT_URL"
            )
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def acked(self) -> int:
        """Messages acknowledged by the broker (for QoS 0: handed to the socket)."""
        with self._lock:
            return self._acked

    def publish(self, topic: str, payload: bytes, stop: threading.Event) -> bool:
        """Publish one message, waiting while the in-flight window is full."""
        while not self._window.acquire(timeout=0.2):
            if stop.is_set():
                return False
        with self._lock:
            self._outstanding += 1
        info = self._client.publish(topic, payload, qos=self._qos)
        queued = info.rc == mqtt.MQTT_ERR_SUCCESS or (
            info.rc == mqtt.MQTT_ERR_NO_CONN and self._qos > 0  # paho resends on reconnect
        )
        if not queued:
            with self._lock:
                self._outstanding -= 1
            self._window.release()
            raise SimulatorError(f"publishing to {topic!r} failed: {mqtt.error_string(info.rc)}")
        return True

    def flush(self, timeout_seconds: float) -> int:
        """Wait up to ``timeout_seconds`` for every PUBACK; return the number missing."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            with self._lock:
                left = self._outstanding
            if left <= 0 or time.monotonic() >= deadline:
                return max(left, 0)
            time.sleep(0.02)  # polling a counter with a deadline, not waiting blindly


def _default_start(step_s: float) -> float:
    return math.floor(time.time() / step_s) * step_s


def run(
    settings: Settings,
    options: SimOptions,
    stop: threading.Event | None = None,
    *,
    publisher: Publisher | None = None,
) -> SimStats:
    """Simulate every site in ``settings`` and publish until the duration ends or ``stop``.

    ``publisher`` replaces the MQTT client (tests pass a recorder). Raises
    :class:`SimulatorError` when the broker cannot be reached.
    """
    stop = stop if stop is not None else threading.Event()
    start_s = (
        options.start_s if options.start_s is not None else _default_start(options.step_seconds)
    )
    encoder = Encoder(
        options.style,
        topic_prefix=options.topic_prefix,
        gateway_topic=options.gateway_topic,
        plain_prefix=options.plain_prefix,
    )
    injector = FaultInjector(options.faults, options.seed)
    stats = SimStats()
    if publisher is None:
        with MqttPublisher(settings.mqtt, options) as mqtt_pub:
            _drive(settings, options, start_s, encoder, injector, mqtt_pub, stop, stats)
    else:
        _drive(settings, options, start_s, encoder, injector, publisher, stop, stats)
    return stats


def _drive(
    settings: Settings,
    options: SimOptions,
    start_s: float,
    encoder: Encoder,
    injector: FaultInjector,
    publisher: Publisher,
    stop: threading.Event,
    stats: SimStats,
) -> None:
    wall0 = time.monotonic()
    log.info(
        "simulating %d site(s) from %s, step %g s, speed %s, style %s",
        len(settings.sites),
        start_s,
        options.step_seconds,
        options.speed or "max",
        options.style,
    )
    paced_ts: float | None = None
    steps = iter_steps(settings, start_s, options.duration_s, options.step_seconds, options.seed)
    try:
        for ts, site, rows in steps:
            if stop.is_set():
                break
            if ts != paced_ts:
                paced_ts = ts
                stats.steps += 1
                if options.speed > 0:
                    delay = wall0 + (ts - start_s) / options.speed - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        break
                stats.first_ts = ts if stats.first_ts is None else stats.first_ts
                stats.last_ts = ts
            samples = [s for meter, f in rows for s in injector.apply(ts, site, meter, f)]
            stats.readings += len(samples)
            for topic, payload in encoder.encode(ts, site, samples):
                if not publisher.publish(topic, payload, stop):
                    break
                stats.messages += 1
                stats.payload_bytes += len(payload)
    finally:
        stats.not_acked = publisher.flush(options.flush_timeout_seconds)
        stats.acked = publisher.acked
        stats.faults = injector.counts.copy()
        stats.wall_seconds = time.monotonic() - wall0
        log.info("simulator %s", stats.summary())
