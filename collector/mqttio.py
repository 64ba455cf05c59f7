"""A buffered receive path and batched acknowledgements on top of paho-mqtt's Client.

Why: profiling (bench/results) showed paho's own per-packet work as the largest cost of a
single-reading message: three ``recv`` system calls per packet (command byte, each
remaining-length byte, body), a fresh ``_in_packet`` dict, an ``MQTTMessage`` with its
``MQTTMessageInfo`` and lock, two ``struct`` formats built per packet and, over MQTT 5, a
``Properties`` object parsed per message (about 30 µs of the 90 µs we measured). What a
collector needs from a PUBLISH is its topic, payload, packet id and QoS.

``BufferedClient`` keeps everything else of paho (connect, TLS, session, subscribe,
keepalive, reconnect, outgoing packets) and replaces only the read side: one ``recv`` of up
to 64 KiB, then every complete packet in the buffer is parsed in place. PUBLISH packets at
QoS 0 and 1 go straight to ``deliver(client, topic, payload, mid, qos)``; any other packet (CONNACK,
SUBACK, PINGRESP, DISCONNECT, QoS 2) is handed to paho's own handler unchanged. MQTT 5
PUBLISH properties are skipped: the agent uses none (it sets no Topic Alias Maximum, so the
broker sends full topics). ``ack_many`` sends the PUBACKs of a whole stored batch as one
write instead of one queued packet, one wake-up and one ``send`` per message.

This relies on paho internals, so it is contained three ways. pyproject pins paho-mqtt to
the minor version it was written against (:data:`PAHO_VERSION`: 2.1 names the receive time
``_last_msg_in``, which this module would write in vain). :func:`paho_problems` probes, at
start-up, every private name this module calls, replaces, reads or writes, with the
parameters it passes (the agent falls back to paho's own reader, saying why, if any is
off). tests/unit/test_paho_canary.py fails when the source of a paho method this module
replaces or mirrors changes, so an upgrade is reviewed rather than assumed; and the tests
run both read paths against a real Mosquitto.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.exception import MalformedPacket

log = logging.getLogger(__name__)

Deliver = Callable[[Any, str, bytes, int, int], None]  # (client, topic, payload, mid, qos)

_RECV_BYTES = 1 << 16
_HOLD_SECONDS = 0.002
_PUBLISH = 0x30
_PUBACK = 0x40

# The paho-mqtt minor version this module was written and reviewed against (pyproject pins
# it; tests/unit/test_paho_canary.py holds the hashes of the paho code it was read with).
PAHO_VERSION = "2.2"
# paho Client methods this module replaces or calls, with their parameters as
# inspect.signature names them: a renamed or reordered parameter is as fatal as a
# missing method.
PAHO_METHODS: dict[str, tuple[str, ...]] = {
    "_packet_read": ("self",),  # replaced; paho's loop_read calls it
    "_packet_handle": ("self",),  # every packet but PUBLISH QoS 0/1, from _in_packet
    "_packet_queue": ("self", "command", "packet", "mid", "qos", "info"),  # ack_many
    "_sock_recv": ("self", "bufsize"),
    "_easy_log": ("self", "level", "fmt", "args"),
}
# Instance attributes this module reads or writes (set by paho's __init__).
PAHO_ATTRIBUTES = (
    "_sock",
    "_msgtime_mutex",  # held while writing _last_bytes_received, as paho does
    "_last_bytes_received",  # keepalive: paho 2.1 called it _last_msg_in
    "_protocol",
    "_manual_ack",
    "_in_packet",
    "_thread",  # network_loop_running: acks only from paho's own network thread
)
# Module-level names of paho.mqtt.client used here.
PAHO_MODULE_NAMES = ("time_func", "MQTT_LOG_ERR", "MQTT_LOG_DEBUG", "MQTTv5")
PAHO_ERROR_CODES = ("MQTT_ERR_SUCCESS", "MQTT_ERR_AGAIN", "MQTT_ERR_CONN_LOST", "MQTT_ERR_PROTOCOL")


def _in_packet(header: int = 0, length: int = 0, body: bytearray | None = None) -> Any:
    """paho's ``_in_packet`` state: a packet fully read (or, by default, none)."""
    return {
        "command": header,
        "have_remaining": 1 if header else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": length,
        "packet": bytearray() if body is None else body,
        "to_process": 0,
        "pos": 0,
    }


def encode_varint(n: int) -> bytes:
    """MQTT's variable byte integer (remaining length, property length): what the reader parses."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_publish(
    topic: bytes, payload: bytes, qos: int = 0, mid: int = 0, properties: bytes | None = None
) -> bytes:
    """One PUBLISH packet as a broker frames it; ``properties`` is MQTT 5's encoded block.

    The agent publishes through paho; this is for the tests of the reader and for the
    benchmark's raw-socket publisher.
    """
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += mid.to_bytes(2, "big")
    if properties is not None:
        body += encode_varint(len(properties)) + properties
    body += payload
    return bytes([_PUBLISH | (qos << 1)]) + encode_varint(len(body)) + body


def paho_problems(client_class: type[mqtt.Client] = mqtt.Client) -> list[str]:
    """What this paho-mqtt lacks of the internals the buffered path relies on (empty: none).

    Checks the version against :data:`PAHO_VERSION`, every method of
    :data:`PAHO_METHODS` with its parameters, every attribute of :data:`PAHO_ATTRIBUTES` on
    a fresh client (and ``_in_packet``'s keys, which :func:`_in_packet` rebuilds), and
    the module names and error codes used here.
    """
    problems = []
    version = getattr(paho.mqtt, "__version__", None) or _installed_version()
    if version.split(".")[:2] != PAHO_VERSION.split("."):
        problems.append(
            f"paho-mqtt {version} is not the {PAHO_VERSION}.x this reader was written for"
        )
    for name, params in PAHO_METHODS.items():
        method = getattr(client_class, name, None)
        if not callable(method):
            problems.append(f"Client.{name} is missing")
            continue
        try:
            found = tuple(inspect.signature(method).parameters)
        except (TypeError, ValueError):
            found = ()
        if found != params:
            problems.append(f"Client.{name}{found} is not Client.{name}{params}")
    probe = client_class(mqtt.CallbackAPIVersion.VERSION2)
    for name in PAHO_ATTRIBUTES:
        if not hasattr(probe, name):
            problems.append(f"Client().{name} is missing")
    packet = getattr(probe, "_in_packet", None)
    if isinstance(packet, dict) and set(packet) != set(_in_packet()):
        problems.append(
            f"Client()._in_packet has keys {sorted(packet)}, not {sorted(_in_packet())}"
        )
    problems += [
        f"paho.mqtt.client.{n} is missing" for n in PAHO_MODULE_NAMES if not hasattr(mqtt, n)
    ]
    problems += [
        f"MQTTErrorCode.{n} is missing" for n in PAHO_ERROR_CODES if not hasattr(MQTTErrorCode, n)
    ]
    return problems


def _installed_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("paho-mqtt")
    except PackageNotFoundError:
        return "?"


@functools.cache
def supported() -> bool:
    """Whether this paho-mqtt has every internal the buffered path relies on (probed once)."""
    return not paho_problems()


def network_loop_running(client: mqtt.Client) -> bool:
    """Whether paho's network thread (``loop_start``) is running for this client.

    paho queues an outgoing packet for its network thread, except when that thread is not
    running: then ``_packet_queue`` writes to the socket at once, from the caller's thread.
    An acknowledgement sent from a sink's thread at that moment (during shutdown, or while a
    client is replaced) would write to the socket while another thread may too; over TLS
    two threads on one SSL object corrupt the stream (OpenSSL objects are not thread-safe),
    which the broker reports as "Bad socket read/write". So the agent acknowledges only
    while the network thread runs; an acknowledgement skipped here is a redelivery later.
    """
    return getattr(client, "_thread", None) is not None


class ProtocolError(Exception):
    """A packet that does not follow MQTT's framing (the connection is dropped)."""


class BufferedClient(mqtt.Client):
    """paho's Client with a buffered read side and PUBLISH delivered without objects."""

    def __init__(
        self,
        *args: Any,
        deliver: Deliver,
        hold: Callable[[], bool] | None = None,
        **kwargs: Any,
    ) -> None:
        """Same arguments as ``paho.mqtt.client.Client``, plus the PUBLISH callback.

        ``hold()``, when given and true, stops reading from the socket for a moment (the
        network loop keeps running: pings, acknowledgements): back-pressure for a broker
        that sends more than the Receive Maximum it was given.
        """
        super().__init__(*args, **kwargs)
        self._deliver = deliver
        self._hold = hold
        self.held = 0  # times reading was held back
        self._rx = bytearray()
        self._rx_sock: object | None = None
        self.published_fast = 0  # PUBLISH packets that took the buffered path

    # -- read side ----------------------------------------------------------------------------
    def _packet_read(self) -> MQTTErrorCode:
        sock = self._sock
        if sock is not self._rx_sock:
            # A new connection: nothing buffered from the old one may be parsed on it.
            self._rx.clear()
            self._rx_sock = sock
        if self._hold is not None and self._hold():
            self.held += 1
            time.sleep(_HOLD_SECONDS)  # the socket stays readable: do not spin on select
            return MQTTErrorCode.MQTT_ERR_AGAIN
        try:
            data = self._sock_recv(_RECV_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            self._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        with self._msgtime_mutex:
            self._last_bytes_received = mqtt.time_func()
        self._rx += data
        try:
            return self._drain(sock)
        except ProtocolError as exc:
            self._easy_log(mqtt.MQTT_LOG_ERR, "malformed packet from the broker: %s", exc)
            self._rx.clear()
            return MQTTErrorCode.MQTT_ERR_PROTOCOL

    def _drain(self, sock: object) -> MQTTErrorCode:
        """Handle every complete packet in the buffer; keep a partial one for later."""
        rx = self._rx
        n = len(rx)
        pos = 0
        v5 = self._protocol == mqtt.MQTTv5
        deliver = self._deliver
        fast = 0
        # Without manual acks, paho acknowledges a QoS 1 message once it is handed over;
        # so do we, for all of this read at once.
        receipts: list[int] | None = None if self._manual_ack else []
        try:
            while n - pos >= 2:
                header = rx[pos]
                i = pos + 1
                byte = rx[i]
                length = byte & 0x7F
                i += 1
                shift = 7
                while byte & 0x80:
                    if i >= n:
                        return MQTTErrorCode.MQTT_ERR_SUCCESS  # length not complete yet
                    if shift > 21:
                        raise ProtocolError("remaining length longer than 4 bytes")
                    byte = rx[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                end = i + length
                if end > n:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS  # body not complete yet
                qos = (header >> 1) & 3
                if header & 0xF0 == _PUBLISH and qos < 2 and length >= 2:
                    p = i + 2 + ((rx[i] << 8) | rx[i + 1])
                    topic = rx[i + 2 : p].decode("utf-8", "replace")
                    mid = 0
                    if qos:
                        mid = (rx[p] << 8) | rx[p + 1]
                        p += 2
                    if v5:
                        byte = rx[p]
                        plen = byte & 0x7F
                        p += 1
                        shift = 7
                        while byte & 0x80:
                            byte = rx[p]
                            p += 1
                            plen |= (byte & 0x7F) << shift
                            shift += 7
                        p += plen
                    if p > end or not topic:
                        raise ProtocolError(f"PUBLISH fields overrun the packet ({length} bytes)")
                    payload = bytes(rx[p:end])
                    pos = end
                    fast += 1
                    try:
                        deliver(self, topic, payload, mid, qos)
                    except Exception:
                        # Never let one message stop the receive loop. Unacknowledged, a
                        # QoS 1 message is redelivered on the next session.
                        log.exception("handling a message on %r failed", topic)
                    else:
                        if qos and receipts is not None:
                            receipts.append(mid)
                    continue
                rc = self._paho_handle(header, length, rx[i:end])
                pos = end
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    return rc
                if self._sock is not sock:
                    return MQTTErrorCode.MQTT_ERR_SUCCESS  # the handler closed the connection
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        except IndexError as exc:
            raise ProtocolError("a field runs past the end of its packet") from exc
        finally:
            self.published_fast += fast
            if self._sock is sock:
                del rx[:pos]
                if receipts:
                    self.ack_many(receipts)
            else:
                rx.clear()

    def _paho_handle(self, header: int, length: int, body: bytearray) -> MQTTErrorCode:
        """One packet through paho's own handler, exactly as its reader would pass it."""
        self._in_packet = _in_packet(header, length, body)
        try:
            return self._packet_handle()
        except MalformedPacket as exc:
            self._easy_log(mqtt.MQTT_LOG_DEBUG, "Received malformed packet: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        finally:
            self._in_packet = _in_packet()

    # -- acknowledgements -----------------------------------------------------------------------
    def ack_many(self, mids: list[int]) -> None:
        """PUBACK every QoS 1 message id in ``mids`` with one queued write.

        Only while the network thread runs (see :func:`network_loop_running`): the packets
        are queued for it to write, never written from the caller's (a sink's) thread.
        """
        if not mids or not network_loop_running(self):
            return
        blob = bytearray(4 * len(mids))
        for k, mid in enumerate(mids):
            o = 4 * k
            blob[o] = _PUBACK
            blob[o + 1] = 2
            blob[o + 2] = mid >> 8
            blob[o + 3] = mid & 0xFF
        self._packet_queue(_PUBACK, bytes(blob), 0, 0)


class PahoLogFilter(logging.Filter):
    """Keeps paho's ordinary connection-loss chatter out of the ERROR level.

    paho logs at ERROR what is routine for a long-running agent: "Client is not connected"
    once its loop notices the socket it just closed (after every orderly disconnect, on every
    SIGTERM), and "failed to receive on socket: ..." when a broker restarts. The agent
    reports every disconnect itself (a WARNING naming the broker and this cause), so these
    lines go to DEBUG, and the last socket error is kept for the agent's own message.
    Any other paho ERROR stays an ERROR.
    """

    _ROUTINE = ("Client is not connected", "failed to receive on socket", "failed to send")

    def __init__(self) -> None:
        super().__init__("greendc.mqtt")
        self._last_error: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        """Downgrade routine connection messages (dropped unless DEBUG is on)."""
        msg = record.msg
        if (
            record.levelno >= logging.ERROR
            and isinstance(msg, str)
            and msg.startswith(self._ROUTINE)
        ):
            if "socket" in msg:
                self._last_error = record.getMessage()
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True

    def take_last_error(self) -> str | None:
        """The last socket error paho reported, once (None if none since the last call)."""
        last, self._last_error = self._last_error, None
        return last
