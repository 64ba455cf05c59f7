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

``GuardedClient`` (the base of ``BufferedClient``, and what the agent uses for paho's own
reader too; with paho's reader it refuses a packet body over ``max_packet_bytes`` before
paho allocates it, dropping the connection) makes the network thread impossible to lose
silently: any exception in the read
path drops the connection (paho then reconnects with backoff) and is counted in
``read_errors``; an exception that escapes paho's loop restarts the loop instead of ending
the thread; ``network_alive`` says whether the thread runs and its loop turned recently.

Bounded memory whatever the broker sends: the agent announces ``max_packet_bytes`` as MQTT
5's Maximum Packet Size, so a conforming broker never sends a larger packet. One that comes
anyway (MQTT 3.1.1 has no such limit) is never buffered: a PUBLISH at QoS 0 or 1 is read
only as far as its topic and packet id, reported to ``oversized`` (the agent counts it as
payload_too_large and acknowledges it, so the broker does not redeliver it forever) and the
rest of its bytes are discarded as they arrive; any other packet that large drops the
connection. The MQTT 5 property length is capped at four bytes like the remaining length.

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
# (client, topic, mid, qos, packet bytes): a PUBLISH over the limit, skipped unread
Oversized = Callable[[Any, str, int, int, int], None]

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
    "_thread_main": ("self",),  # GuardedClient restarts the loop it runs
    "_loop_rc_handle": ("self", "rc"),  # GuardedClient drops the connection through it
    "_reconnect_wait": ("self",),  # the backoff before a restarted loop
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
    "_thread_terminate",  # GuardedClient's loop restart reads it
)
# Module-level names of paho.mqtt.client used here.
PAHO_MODULE_NAMES = ("time_func", "MQTT_LOG_ERR", "MQTT_LOG_DEBUG", "MQTTv5")
PAHO_ERROR_CODES = ("MQTT_ERR_SUCCESS", "MQTT_ERR_AGAIN", "MQTT_ERR_CONN_LOST", "MQTT_ERR_PROTOCOL")
# MQTT's variable byte integers (remaining length, property length) have at most 4 bytes.
_VARINT_MAX_SHIFT = 21
_ERROR_TEXT_MAX = 200


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


# What a PUBLISH may carry besides its payload: the longest topic MQTT allows (64 KiB, which
# the decoder then refuses cheaply), a packet id, properties and the fixed header. A payload a
# little over max_payload_bytes still arrives and is counted as payload_too_large; one far
# over it never leaves a conforming broker.
PACKET_OVERHEAD_BYTES = 2 + 65_535 + 2 + 4096 + 5


def max_packet_bytes(max_payload_bytes: int) -> int:
    """The Maximum Packet Size the agent announces and enforces for a payload limit."""
    return max_payload_bytes + PACKET_OVERHEAD_BYTES


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


class PacketTooLarge(ProtocolError):
    """A packet longer than the Maximum Packet Size we announced (dropped unread)."""


def _clip(text: str) -> str:
    return text if len(text) <= _ERROR_TEXT_MAX else text[: _ERROR_TEXT_MAX - 3] + "..."


class GuardedClient(mqtt.Client):
    """paho's Client whose network thread survives any exception in its read path.

    Without this, an exception in a callback or in packet parsing (a MemoryError, a bug, a
    topic a malicious broker made invalid UTF-8) ends paho's network thread while the agent
    still believes it is connected: nothing is read again, and nothing says so.
    """

    def __init__(self, *args: Any, max_packet_bytes: int | None = None, **kwargs: Any) -> None:
        """Same arguments as ``paho.mqtt.client.Client``; ``max_packet_bytes`` caps a packet."""
        super().__init__(*args, **kwargs)
        self.max_packet_bytes = max_packet_bytes
        self.read_errors = 0  # exceptions in the read path (each dropped the connection)
        self.loop_restarts = 0  # exceptions that escaped paho's loop (the loop was restarted)
        self.last_read_error: str | None = None
        self._heartbeat_s = time.monotonic()

    def _packet_read(self) -> MQTTErrorCode:
        try:
            return self._guarded_read()
        except Exception as exc:
            self.read_errors += 1
            self.last_read_error = _clip(f"{type(exc).__name__}: {exc}")
            log.error(
                "the MQTT read path failed (%s); dropping the connection to reconnect",
                self.last_read_error,
                exc_info=not isinstance(exc, ProtocolError),
            )
            self._in_packet = _in_packet()
            if isinstance(exc, ProtocolError):
                return MQTTErrorCode.MQTT_ERR_PROTOCOL
            return MQTTErrorCode.MQTT_ERR_CONN_LOST

    def _guarded_read(self) -> MQTTErrorCode:
        """Read what the socket has; subclasses replace this, exceptions are handled above."""
        rc: MQTTErrorCode = super()._packet_read()
        return rc

    def _sock_recv(self, bufsize: int) -> bytes:
        # paho's own reader asks for a packet's whole body in one recv, which allocates that
        # much at once (a 250 MiB packet took the collector to 812 MiB): refuse it first.
        limit = self.max_packet_bytes
        if limit is not None and bufsize > limit:
            raise PacketTooLarge(
                f"a packet body of {bufsize} bytes exceeds the {limit}-byte Maximum Packet "
                "Size (validation.max_payload_bytes)"
            )
        data: bytes = super()._sock_recv(bufsize)
        return data

    def loop_misc(self) -> MQTTErrorCode:
        """paho's periodic work (keepalive), run once per turn of the loop: our heartbeat."""
        self._heartbeat_s = time.monotonic()
        return super().loop_misc()

    def _thread_main(self) -> None:
        # paho's loop_forever in a loop: an exception that escapes it (outside the read path)
        # is logged and counted, the connection is dropped, and the loop runs again (it
        # reconnects with the configured backoff) instead of ending the thread.
        try:
            while True:
                try:
                    self.loop_forever(retry_first_connection=True)
                    return
                except Exception as exc:
                    self.loop_restarts += 1
                    self.last_read_error = _clip(f"{type(exc).__name__}: {exc}")
                    log.exception("the MQTT network loop failed; restarting it")
                    if self._thread_terminate:
                        return
                    self._loop_rc_handle(MQTTErrorCode.MQTT_ERR_CONN_LOST)
                    self._reconnect_wait()  # the configured backoff: never a hot loop
        finally:
            self._thread = None

    def network_alive(self, stall_after_s: float) -> bool:
        """Whether the network thread runs and its loop turned within ``stall_after_s``."""
        thread = self._thread
        return (
            thread is not None
            and thread.is_alive()
            and time.monotonic() - self._heartbeat_s < stall_after_s
        )


class BufferedClient(GuardedClient):
    """paho's Client with a buffered read side and PUBLISH delivered without objects."""

    def __init__(
        self,
        *args: Any,
        deliver: Deliver,
        hold: Callable[[], bool] | None = None,
        oversized: Oversized | None = None,
        **kwargs: Any,
    ) -> None:
        """Same arguments as :class:`GuardedClient`, plus the PUBLISH callback.

        ``hold()``, when given and true, stops reading from the socket for a moment (the
        network loop keeps running: pings, acknowledgements): back-pressure for a broker
        that sends more than the Receive Maximum it was given. An exception from
        ``deliver`` drops the connection (the broker redelivers an unacknowledged message).
        ``oversized`` is told of each PUBLISH over ``max_packet_bytes`` that is skipped (its
        QoS 1 acknowledgement is then the caller's, as for a delivered message); without it,
        such a packet drops the connection.
        """
        super().__init__(*args, **kwargs)
        self._deliver = deliver
        self._oversized = oversized
        self._skip = 0  # bytes of a skipped oversized packet still to discard
        self.skipped = 0  # oversized PUBLISH packets skipped unread
        self._hold = hold
        self.held = 0  # times reading was held back
        self._rx = bytearray()
        self._rx_sock: object | None = None
        self.published_fast = 0  # PUBLISH packets that took the buffered path

    # -- read side ----------------------------------------------------------------------------
    def _sock_recv(self, bufsize: int) -> bytes:
        # Our reads are 64 KiB chunks, not packet bodies: the limit is applied to each parsed
        # remaining length instead (see _drain).
        data: bytes = mqtt.Client._sock_recv(self, bufsize)
        return data

    def _guarded_read(self) -> MQTTErrorCode:
        sock = self._sock
        if sock is not self._rx_sock:
            # A new connection: nothing buffered from the old one may be parsed on it.
            self._rx.clear()
            self._rx_sock = sock
            self._skip = 0
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
        if self._skip:
            # The body of an oversized packet: dropped as it arrives, never kept.
            k = min(self._skip, len(data))
            self._skip -= k
            if k == len(data):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            data = data[k:]
        self._rx += data
        try:
            return self._drain(sock)
        except ProtocolError:
            self._rx.clear()
            raise

    def _drain(self, sock: object) -> MQTTErrorCode:
        """Handle every complete packet in the buffer; keep a partial one for later."""
        rx = self._rx
        n = len(rx)
        pos = 0
        v5 = self._protocol == mqtt.MQTTv5
        limit = self.max_packet_bytes
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
                    if shift > _VARINT_MAX_SHIFT:
                        raise ProtocolError("remaining length longer than 4 bytes")
                    byte = rx[i]
                    i += 1
                    length |= (byte & 0x7F) << shift
                    shift += 7
                end = i + length
                if limit is not None and end - pos > limit:
                    # Never buffered: the limit bounds memory whatever the broker sends.
                    head = self._oversized_head(rx, i, n, header, end - pos, limit)
                    if head is None:
                        return MQTTErrorCode.MQTT_ERR_SUCCESS  # topic not complete yet
                    topic, mid, qos = head
                    size = end - pos
                    self._skip = max(0, end - n)
                    pos = min(end, n)
                    self.skipped += 1
                    assert self._oversized is not None  # _oversized_head raised otherwise
                    self._oversized(self, topic, mid, qos, size)
                    if qos and receipts is not None:
                        receipts.append(mid)
                    continue
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
                            if shift > _VARINT_MAX_SHIFT:
                                raise ProtocolError("property length longer than 4 bytes")
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
                    # An exception here drops the connection (GuardedClient); unacknowledged,
                    # a QoS 1 message is redelivered, and the agent dead-letters one that
                    # fails twice.
                    deliver(self, topic, payload, mid, qos)
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

    def _oversized_head(
        self, rx: bytearray, i: int, n: int, header: int, size: int, limit: int
    ) -> tuple[str, int, int] | None:
        """Topic, packet id and QoS of an oversized PUBLISH (None until they have arrived).

        Anything else that large, or without a callback to report it to, is a protocol
        error: the connection is dropped.
        """
        qos = (header >> 1) & 3
        if header & 0xF0 != _PUBLISH or qos == 2 or self._oversized is None:
            raise PacketTooLarge(
                f"a packet of {size} bytes exceeds the {limit}-byte Maximum Packet Size "
                "(validation.max_payload_bytes)"
            )
        if n < i + 2:
            return None
        p = i + 2 + ((rx[i] << 8) | rx[i + 1])
        if n < p + (2 if qos else 0):
            return None  # at most a 64 KiB topic: still bounded
        topic = rx[i + 2 : p].decode("utf-8", "replace")
        mid = (rx[p] << 8) | rx[p + 1] if qos else 0
        return topic, mid, qos

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
