"""Sparkplug B (Eclipse Sparkplug 3.0): its topics and protobuf payloads, and a node's session.

Pure parts: :func:`parse_topic` and :func:`decode_payload` turn a topic and payload bytes
into plain values (or raise ValueError with the reason), and :func:`rebirth_request` builds
the NCMD payload that asks a node for a new birth. The payload schema is the specification's
own ``sparkplug_b.proto`` (greendc/data/proto), compiled into ``greendc._sparkplug_b_pb2``.

Stateful part: :class:`Sessions`, what the birth certificates said. Sparkplug is a stateful
protocol: NBIRTH/DBIRTH define each metric's name, alias and type, later NDATA/DDATA name
metrics by alias only, and every message of a node carries a sequence number 0-255 that
increments by one, so a skipped number means messages were lost. NDEATH/DDEATH end a node's
or device's session: its meters are then stale (not zero). The decoder keeps one
:class:`Sessions` and asks it for each message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

NAMESPACE = "spBv1.0"
REBIRTH_METRIC = "Node Control/Rebirth"
BDSEQ_METRIC = "bdSeq"
_BOOLEAN = 11  # DataType.Boolean
_NUMERIC_TYPES = frozenset(range(1, 11))  # Int8 .. Double
_DATETIME = 13


class MessageType(StrEnum):
    """The Sparkplug B message types (the topic's third segment)."""

    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"


@dataclass(frozen=True)
class Topic:
    """A Sparkplug topic: spBv1.0/<group>/<type>/<node>[/<device>], or spBv1.0/STATE/<host>."""

    group: str
    kind: MessageType
    node: str
    device: str | None = None


@dataclass(frozen=True)
class Metric:
    """One metric of a payload; ``value`` None when null or not a plain scalar."""

    name: str | None
    alias: int | None
    datatype: int | None
    timestamp_ms: int | None
    value: float | int | bool | str | None
    is_historical: bool = False


@dataclass(frozen=True)
class Payload:
    """A decoded Sparkplug B payload."""

    timestamp_ms: int | None
    seq: int | None
    metrics: tuple[Metric, ...]


def parse_topic(topic: str) -> Topic:
    """The parts of a Sparkplug B topic; ValueError when it is not one."""
    parts = topic.split("/")
    if not parts or parts[0] != NAMESPACE:
        raise ValueError(f"not a Sparkplug B topic (it must start with {NAMESPACE}/)")
    if len(parts) == 3 and parts[1] == "STATE":
        return Topic(group="", kind=MessageType.STATE, node=parts[2])
    if len(parts) not in (4, 5) or not all(parts):
        raise ValueError("a Sparkplug B topic is spBv1.0/<group>/<type>/<node>[/<device>]")
    try:
        kind = MessageType(parts[2])
    except ValueError:
        raise ValueError(f"{parts[2]!r} is not a Sparkplug B message type") from None
    device = parts[4] if len(parts) == 5 else None
    if (device is None) != kind.value.startswith("N"):
        raise ValueError(f"a {kind.value} topic {'has no' if device is None else 'has a'} device")
    return Topic(group=parts[1], kind=kind, node=parts[3], device=device)


def _pb() -> Any:
    # Imported when first needed: a collector without Sparkplug mappings never loads protobuf.
    from greendc import _sparkplug_b_pb2

    return _sparkplug_b_pb2


def decode_payload(data: bytes) -> Payload:
    """A Sparkplug B protobuf payload as plain values; ValueError if it does not parse."""
    from google.protobuf.message import DecodeError

    pb = _pb().Payload()
    try:
        pb.ParseFromString(data)
    except DecodeError as exc:
        raise ValueError(f"not a Sparkplug B protobuf payload: {exc}") from exc
    metrics = []
    for m in pb.metrics:
        which = m.WhichOneof("value")
        value: Any = None
        if not m.is_null and which in (
            "int_value",
            "long_value",
            "float_value",
            "double_value",
            "boolean_value",
            "string_value",
        ):
            value = getattr(m, which)
        metrics.append(
            Metric(
                name=m.name if m.HasField("name") else None,
                alias=m.alias if m.HasField("alias") else None,
                datatype=m.datatype if m.HasField("datatype") else None,
                timestamp_ms=m.timestamp if m.HasField("timestamp") else None,
                value=value,
                is_historical=m.is_historical,
            )
        )
    return Payload(
        timestamp_ms=pb.timestamp if pb.HasField("timestamp") else None,
        seq=pb.seq if pb.HasField("seq") else None,
        metrics=tuple(metrics),
    )


def numeric_value(metric: Metric, datatype: int | None) -> float | None:
    """A metric's value as a float when its type is a number (signed ints reinterpreted)."""
    v = metric.value
    if v is None or isinstance(v, bool | str) or datatype not in _NUMERIC_TYPES:
        return None
    if datatype in (1, 2, 3) and isinstance(v, int) and v >= 1 << 31:
        v -= 1 << 32  # Int8/16/32 travel as uint32 (two's complement)
    elif datatype == 4 and isinstance(v, int) and v >= 1 << 63:
        v -= 1 << 64  # Int64 travels as uint64
    return float(v)


def rebirth_request(timestamp_ms: int) -> bytes:
    """The NCMD payload asking a node to publish its births again (Sparkplug 3.0, 6.4.16)."""
    pb = _pb().Payload()
    pb.timestamp = timestamp_ms
    m = pb.metrics.add()
    m.name = REBIRTH_METRIC
    m.datatype = _BOOLEAN
    m.boolean_value = True
    return bytes(pb.SerializeToString())


@dataclass
class NodeSession:
    """What a node's birth certificates said, and where its sequence is."""

    seq: int | None = None
    bdseq: int | None = None
    # (device or None for the node, alias) -> (name, datatype); and name -> datatype
    aliases: dict[tuple[str | None, int], tuple[str, int | None]] = field(default_factory=dict)
    types: dict[tuple[str | None, str], int | None] = field(default_factory=dict)
    devices: set[str] = field(default_factory=set)
    meters: dict[str | None, set[tuple[str, str]]] = field(default_factory=dict)


class Sessions:
    """Every node's session, keyed by (group, node)."""

    def __init__(self) -> None:
        self._nodes: dict[tuple[str, str], NodeSession] = {}

    def get(self, group: str, node: str) -> NodeSession | None:
        """The node's session, or None before its NBIRTH (or after its NDEATH)."""
        return self._nodes.get((group, node))

    def birth(self, group: str, node: str, bdseq: int | None) -> NodeSession:
        """A new session for the node (NBIRTH): what an earlier one said is forgotten."""
        session = NodeSession(bdseq=bdseq)
        self._nodes[(group, node)] = session
        return session

    def end(self, group: str, node: str) -> NodeSession | None:
        """End the node's session (NDEATH); returns it (its meters go stale)."""
        return self._nodes.pop((group, node), None)
