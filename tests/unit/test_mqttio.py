"""The buffered MQTT read path: framing, MQTT 5 properties, hand-off to paho, batched PUBACKs.

Packets are written by hand (as a broker would) into one end of a socket pair; the client
reads the other end exactly as it reads a broker connection.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from greendc.collector.mqttio import (
    BufferedClient,
    GuardedClient,
    encode_publish,
    encode_varint,
    max_packet_bytes,
    supported,
)

Delivered = tuple[str, bytes, int, int]


def publish(
    topic: str, payload: bytes, qos: int = 0, mid: int = 0, props: bytes | None = None
) -> bytes:
    """A PUBLISH packet; ``props`` (MQTT 5 only) is the encoded property block."""
    return encode_publish(topic.encode(), payload, qos, mid, props)


class Harness:
    """A BufferedClient whose socket is one end of a socket pair."""

    def __init__(
        self,
        protocol: int = mqtt.MQTTv311,
        deliver_error_on: str | None = None,
        max_packet_bytes: int | None = None,
        skip_oversized: bool = False,
    ) -> None:
        self.got: list[Delivered] = []
        self.oversized: list[tuple[str, int, int, int]] = []
        self._error_on = deliver_error_on
        self.client = BufferedClient(
            callback_api_version=CallbackAPIVersion.VERSION2,
            protocol=protocol,
            deliver=self._deliver,
            oversized=self._oversized if skip_oversized else None,
            max_packet_bytes=max_packet_bytes,
        )
        self.broker, ours = socket.socketpair()
        ours.setblocking(False)
        self.client._sock = ours  # what paho's connect would have set

    def _deliver(self, client: object, topic: str, payload: bytes, mid: int, qos: int) -> None:
        assert client is self.client
        if topic == self._error_on:
            raise RuntimeError("boom")
        self.got.append((topic, payload, mid, qos))

    def _oversized(self, client: object, topic: str, mid: int, qos: int, size: int) -> None:
        assert client is self.client
        self.oversized.append((topic, mid, qos, size))

    def feed(self, data: bytes) -> MQTTErrorCode:
        self.broker.sendall(data)
        return self.client._packet_read()

    def close(self) -> None:
        self.broker.close()
        if self.client._sock is not None:
            self.client._sock.close()


@pytest.fixture
def h() -> Iterator[Harness]:
    harness = Harness()
    yield harness
    harness.close()


def test_this_paho_has_the_internals_the_buffered_path_needs() -> None:
    assert supported()


def test_several_packets_in_one_read_are_all_delivered_in_order(h: Harness) -> None:
    data = (
        publish("greendc/sg1/ups-1", b'{"power_w": 1}')
        + publish("greendc/sg1/ups-2", b'{"power_w": 2}', qos=1, mid=7)
        + publish("greendc/sg1", b"[]", qos=1, mid=65535)
    )
    assert h.feed(data) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert h.got == [
        ("greendc/sg1/ups-1", b'{"power_w": 1}', 0, 0),
        ("greendc/sg1/ups-2", b'{"power_w": 2}', 7, 1),
        ("greendc/sg1", b"[]", 65535, 1),
    ]
    assert h.client.published_fast == 3


def test_a_packet_split_across_reads_is_delivered_once_complete(h: Harness) -> None:
    big = b"x" * 20_000  # a three-byte remaining length
    data = publish("a/b", big, qos=1, mid=3) + publish("a/c", b"1")
    for k in range(0, len(data) - 1, 4096):
        h.feed(data[k : min(k + 4096, len(data) - 1)])
    # The first packet is complete; the last byte of the second is still missing.
    assert h.got == [("a/b", big, 3, 1)]
    assert len(h.client._rx) == len(publish("a/c", b"1")) - 1
    h.feed(data[-1:])
    assert h.got == [("a/b", big, 3, 1), ("a/c", b"1", 0, 0)]
    assert len(h.client._rx) == 0


def test_a_remaining_length_split_between_reads_waits_for_its_last_byte(h: Harness) -> None:
    data = publish("t", b"y" * 300)  # remaining length takes two bytes
    h.feed(data[:2])  # command byte and the first length byte (continuation bit set)
    assert h.got == []
    h.feed(data[2:])
    assert h.got == [("t", b"y" * 300, 0, 0)]


def test_mqtt5_properties_are_skipped_and_the_payload_is_exact() -> None:
    h = Harness(protocol=mqtt.MQTTv5)
    try:
        user_prop = bytes([0x26]) + b"\x00\x01k" + b"\x00\x02vv"  # user property k=vv
        content_type = bytes([0x03]) + b"\x00\x10application/json"
        long_props = user_prop * 30  # a property block longer than 127 bytes
        h.feed(
            publish("s/m", b'{"a":1}', qos=1, mid=9, props=user_prop + content_type)
            + publish("s/n", b"{}", props=b"")
            + publish("s/o", b"[1]", props=long_props)
        )
        assert h.got == [("s/m", b'{"a":1}', 9, 1), ("s/n", b"{}", 0, 0), ("s/o", b"[1]", 0, 0)]
    finally:
        h.close()


def test_fields_overrunning_their_packet_are_a_protocol_error(h: Harness) -> None:
    bad = bytes([0x30, 4, 0, 50]) + b"ab"  # topic length 50 in a 4-byte packet
    assert h.feed(bad) == MQTTErrorCode.MQTT_ERR_PROTOCOL
    assert h.got == []
    assert len(h.client._rx) == 0


def test_variable_byte_integers_use_one_to_four_bytes() -> None:
    assert [len(encode_varint(n)) for n in (0, 127, 128, 16_383, 16_384, 268_435_455)] == [
        1,
        1,
        2,
        2,
        3,
        4,
    ]
    assert encode_varint(321) == bytes([0xC1, 0x02])  # the example in the MQTT 5 spec, 1.5.5


def test_a_remaining_length_of_five_bytes_is_a_protocol_error(h: Harness) -> None:
    assert h.feed(bytes([0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01])) == MQTTErrorCode.MQTT_ERR_PROTOCOL


def test_other_packets_go_to_paho_and_publishes_around_them_still_arrive(h: Harness) -> None:
    h.client._ping_t = 123.0  # paho clears this when a PINGRESP arrives
    data = publish("a", b"1") + bytes([0xD0, 0x00]) + publish("b", b"2")
    assert h.feed(data) == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert h.client._ping_t == 0
    assert [g[0] for g in h.got] == ["a", "b"]


def test_a_malformed_non_publish_packet_is_reported_by_paho(h: Harness) -> None:
    assert h.feed(bytes([0xD0, 0x01, 0x00])) == MQTTErrorCode.MQTT_ERR_PROTOCOL  # PINGRESP, 1 byte


def test_a_failing_handler_drops_the_connection_and_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The message before it is delivered; the failure ends this connection (the broker
    redelivers what was not acknowledged) instead of escaping into paho's thread."""
    h = Harness(deliver_error_on="bad")
    try:
        rc = h.feed(publish("first", b"0") + publish("bad", b"1") + publish("good", b"2"))
        assert rc == MQTTErrorCode.MQTT_ERR_CONN_LOST
        assert h.got == [("first", b"0", 0, 0)]
        assert h.client.read_errors == 1
        assert h.client.last_read_error == "RuntimeError: boom"
        assert "the MQTT read path failed (RuntimeError: boom)" in caplog.text
    finally:
        h.close()


def test_a_packet_over_the_maximum_size_is_refused_before_its_body_arrives() -> None:
    """Only the fixed header has been sent: the reader refuses on the remaining length, so a
    250 MiB packet is never buffered."""
    h = Harness()
    h.client.max_packet_bytes = 1000
    try:
        header = bytes([0x30]) + encode_varint(250 * 1024 * 1024)
        assert h.feed(header) == MQTTErrorCode.MQTT_ERR_PROTOCOL
        assert h.client.read_errors == 1
        assert "Maximum Packet Size" in (h.client.last_read_error or "")
        assert len(h.client._rx) == 0 and h.got == []
    finally:
        h.close()


def test_an_oversized_publish_is_skipped_unbuffered_and_the_next_one_delivered() -> None:
    """MQTT 3.1.1 has no Maximum Packet Size: a broker may send one anyway. Only its topic
    and packet id are read; its body is discarded as it arrives, and the connection stays."""
    h = Harness(max_packet_bytes=10_000, skip_oversized=True)
    big = publish("greendc/sg1/ups-1", b"x" * 3_000_000, qos=1, mid=42)
    try:
        kept = []
        for k in range(0, len(big), 50_000):
            assert h.feed(big[k : k + 50_000]) == MQTTErrorCode.MQTT_ERR_SUCCESS
            kept.append(len(h.client._rx))
        assert max(kept) <= 50_000, "the body was buffered"
        h.feed(publish("greendc/sg1/ups-2", b"ok", qos=1, mid=43))
        assert h.oversized == [("greendc/sg1/ups-1", 42, 1, len(big))]
        assert h.got == [("greendc/sg1/ups-2", b"ok", 43, 1)]
        assert h.client.skipped == 1 and h.client.read_errors == 0
    finally:
        h.close()


def test_an_oversized_packet_that_is_not_a_publish_drops_the_connection() -> None:
    h = Harness(max_packet_bytes=10_000, skip_oversized=True)
    try:
        assert h.feed(bytes([0x90]) + encode_varint(20_000)) == MQTTErrorCode.MQTT_ERR_PROTOCOL
        assert h.oversized == [] and h.client.read_errors == 1
    finally:
        h.close()


def test_a_packet_at_the_maximum_size_is_delivered() -> None:
    h = Harness()
    packet = publish("t", b"x" * 900, qos=1, mid=7)
    h.client.max_packet_bytes = len(packet)
    try:
        h.feed(packet)
        assert h.got == [("t", b"x" * 900, 7, 1)]
    finally:
        h.close()


def test_an_mqtt5_property_length_of_five_bytes_is_a_protocol_error() -> None:
    """Before the cap, 256 KiB of 0xFF held the network thread for seconds."""
    h = Harness(protocol=mqtt.MQTTv5)
    try:
        body = b"\x00\x01t" + b"\xff" * 5000
        packet = bytes([0x30]) + encode_varint(len(body)) + body
        assert h.feed(packet) == MQTTErrorCode.MQTT_ERR_PROTOCOL
        assert "property length longer than 4 bytes" in (h.client.last_read_error or "")
    finally:
        h.close()


def test_pahos_own_reader_refuses_an_oversized_body_before_allocating_it() -> None:
    """paho asks for the whole body in one recv; the guard refuses it from the header."""
    client = GuardedClient(callback_api_version=CallbackAPIVersion.VERSION2, max_packet_bytes=1000)
    broker, ours = socket.socketpair()
    ours.setblocking(False)
    client._sock = ours
    try:
        broker.sendall(bytes([0x30]) + encode_varint(250 * 1024 * 1024) + b"\x00\x01t")
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        for _ in range(8):  # paho reads the command byte, then each length byte, then the body
            rc = client._packet_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        assert rc == MQTTErrorCode.MQTT_ERR_PROTOCOL
        assert client.read_errors == 1
        assert "exceeds the 1000-byte Maximum Packet Size" in (client.last_read_error or "")
    finally:
        broker.close()
        ours.close()


def test_a_client_without_a_running_thread_is_not_alive() -> None:
    client = GuardedClient(callback_api_version=CallbackAPIVersion.VERSION2)
    assert not client.network_alive(60.0)


def test_max_packet_bytes_admits_the_largest_accepted_payload_on_the_longest_topic() -> None:
    limit = max_packet_bytes(256 * 1024)
    largest = encode_publish(b"t" * 65_535, b"x" * 256 * 1024, qos=1, mid=1, properties=b"")
    assert len(largest) <= limit < 2 * 256 * 1024


def test_the_closed_connection_is_reported_as_lost(h: Harness) -> None:
    h.broker.close()
    assert h.client._packet_read() == MQTTErrorCode.MQTT_ERR_CONN_LOST


def test_nothing_to_read_is_not_an_error(h: Harness) -> None:
    assert h.client._packet_read() == MQTTErrorCode.MQTT_ERR_AGAIN


def test_a_new_connection_never_parses_bytes_left_from_the_old_one(h: Harness) -> None:
    h.feed(publish("a", b"1")[:3])
    assert len(h.client._rx) == 3
    fresh, ours = socket.socketpair()
    ours.setblocking(False)
    old = h.client._sock
    assert old is not None
    old.close()
    h.client._sock = ours
    fresh.sendall(publish("b", b"2"))
    h.client._packet_read()
    assert h.got == [("b", b"2", 0, 0)]
    fresh.close()


def test_ack_many_writes_one_puback_per_message_id(h: Harness) -> None:
    h.client._thread = threading.current_thread()  # as while loop_start's thread runs
    h.client.ack_many([1, 258, 65535])
    assert len(h.client._out_packet) == 1  # queued for the network thread, not written
    assert h.client._packet_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
    h.broker.settimeout(2)
    got = h.broker.recv(100)
    assert got == bytes([0x40, 2, 0, 1, 0x40, 2, 1, 2, 0x40, 2, 0xFF, 0xFF])


def test_ack_many_without_a_network_thread_writes_nothing(h: Harness) -> None:
    # paho would write at once from this thread: an acknowledgement is skipped instead
    # (the broker redelivers), so no thread but paho's ever writes the socket.
    assert h.client._thread is None
    h.client.ack_many([1, 2])
    assert len(h.client._out_packet) == 0


def test_ack_many_of_nothing_writes_nothing(h: Harness) -> None:
    h.client.ack_many([])
    assert len(h.client._out_packet) == 0


_topics = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x2FFF, exclude_characters="+#\x00"),
    min_size=1,
    max_size=40,
)


@settings(max_examples=60, deadline=None)
@given(
    messages=st.lists(
        st.tuples(_topics, st.binary(max_size=300), st.integers(0, 1), st.integers(1, 65535)),
        min_size=1,
        max_size=12,
    ),
    chunk=st.integers(1, 700),
    v5=st.booleans(),
)
def test_any_stream_in_any_chunking_delivers_exactly_what_was_published(
    messages: list[tuple[str, bytes, int, int]], chunk: int, v5: bool
) -> None:
    h = Harness(protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311)
    try:
        expected = [(t, p, mid if qos else 0, qos) for t, p, qos, mid in messages]
        data = b"".join(
            publish(t, p, qos, mid, props=b"" if v5 else None) for t, p, qos, mid in messages
        )
        for k in range(0, len(data), chunk):
            assert h.feed(data[k : k + chunk]) == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert h.got == expected
    finally:
        h.close()


def test_a_hold_leaves_the_bytes_in_the_socket_until_it_lifts() -> None:
    holding = [True]
    h = Harness()
    h.client._hold = lambda: holding[0]
    try:
        assert h.feed(publish("a", b"1")) == MQTTErrorCode.MQTT_ERR_AGAIN
        assert h.got == [] and h.client.held == 1
        holding[0] = False
        assert h.client._packet_read() == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert h.got == [("a", b"1", 0, 0)]
    finally:
        h.close()


class _LoopFailsOnce(GuardedClient):
    """A client whose network loop raises the first time it runs (outside the read path)."""

    def __init__(self) -> None:
        super().__init__(callback_api_version=CallbackAPIVersion.VERSION2)
        self.reconnect_delay_set(min_delay=0, max_delay=0)
        self.runs = 0
        self.disconnects = 0
        self.on_disconnect = lambda *_a: setattr(self, "disconnects", self.disconnects + 1)

    def loop_forever(self, timeout: float = 1.0, retry_first_connection: bool = False) -> Any:
        self.runs += 1
        if self.runs == 1:
            raise MemoryError("while handling a packet")
        return MQTTErrorCode.MQTT_ERR_SUCCESS


def test_an_exception_escaping_the_network_loop_restarts_it_instead_of_ending_the_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = _LoopFailsOnce()
    client._thread_main()  # what loop_start() runs in the network thread
    assert client.runs == 2, "the loop was not run again"
    assert client.loop_restarts == 1
    assert client.disconnects == 1, "the connection was not reported lost"
    assert client.last_read_error == "MemoryError: while handling a packet"
    assert "the MQTT network loop failed; restarting it" in caplog.text
