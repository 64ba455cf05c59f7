"""A Sparkplug B edge node for tests: payloads built with the specification's protobuf schema.

The node publishes what Eclipse Sparkplug 3.0 says an edge node publishes: an NBIRTH with
its bdSeq and metric names, aliases and types, a DBIRTH per device, then NDATA/DDATA naming
metrics by alias only, every message with the next sequence number (0-255, wrapping), and
an NDEATH carrying the bdSeq of the birth it ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from greendc import _sparkplug_b_pb2 as pb

DOUBLE = 10
FLOAT = 9
INT64 = 4
UINT64 = 8
BOOLEAN = 11
STRING = 12


@dataclass
class EdgeNode:
    """The messages of one edge node, as (topic, payload bytes)."""

    group: str
    node: str
    bdseq: int = 0
    seq: int = 0
    aliases: dict[tuple[str | None, str], int] = field(default_factory=dict)
    _next_alias: int = 1

    def _topic(self, kind: str, device: str | None = None) -> str:
        tail = f"/{device}" if device else ""
        return f"spBv1.0/{self.group}/{kind}/{self.node}{tail}"

    def _payload(self, ts_ms: int, seq: int | None) -> Any:
        p = pb.Payload()
        p.timestamp = ts_ms
        if seq is not None:
            p.seq = seq
        return p

    def _next_seq(self) -> int:
        seq = self.seq
        self.seq = (self.seq + 1) % 256
        return seq

    @staticmethod
    def _set(m: Any, datatype: int, value: Any) -> None:
        m.datatype = datatype
        if datatype in (DOUBLE,):
            m.double_value = value
        elif datatype == FLOAT:
            m.float_value = value
        elif datatype in (INT64, UINT64):
            m.long_value = value
        elif datatype == BOOLEAN:
            m.boolean_value = value
        elif datatype == STRING:
            m.string_value = value
        else:
            m.int_value = value

    def birth(
        self, ts_ms: int, metrics: list[tuple[str, int, Any]], device: str | None = None
    ) -> tuple[str, bytes]:
        """NBIRTH (device None, sequence restarts at 0) or DBIRTH: names, aliases, types."""
        if device is None:
            self.seq = 0
        p = self._payload(ts_ms, self._next_seq())
        if device is None:
            b = p.metrics.add()
            b.name = "bdSeq"
            self._set(b, INT64, self.bdseq)
        for name, datatype, value in metrics:
            alias = self.aliases.setdefault((device, name), self._next_alias)
            self._next_alias = max(self._next_alias, alias + 1)
            m = p.metrics.add()
            m.name = name
            m.alias = alias
            m.timestamp = ts_ms
            self._set(m, datatype, value)
        return self._topic("DBIRTH" if device else "NBIRTH", device), p.SerializeToString()

    def data(
        self,
        ts_ms: int,
        metrics: list[tuple[str, int, Any]],
        device: str | None = None,
        *,
        seq: int | None = None,
    ) -> tuple[str, bytes]:
        """NDATA/DDATA naming each metric by its alias only; ``seq`` forces a number."""
        if seq is not None:
            self.seq = seq
        p = self._payload(ts_ms, self._next_seq())
        for name, datatype, value in metrics:
            m = p.metrics.add()
            m.alias = self.aliases[(device, name)]
            m.timestamp = ts_ms
            self._set(m, datatype, value)
        return self._topic("DDATA" if device else "NDATA", device), p.SerializeToString()

    def death(self, ts_ms: int | None = None) -> tuple[str, bytes]:
        """NDEATH with the bdSeq of the current birth (what the node's MQTT Will carries)."""
        p = pb.Payload()
        if ts_ms is not None:
            p.timestamp = ts_ms
        b = p.metrics.add()
        b.name = "bdSeq"
        self._set(b, INT64, self.bdseq)
        return self._topic("NDEATH"), p.SerializeToString()

    def device_death(self, ts_ms: int, device: str) -> tuple[str, bytes]:
        """DDEATH of one device."""
        p = self._payload(ts_ms, self._next_seq())
        return self._topic("DDEATH", device), p.SerializeToString()


def parse(payload: bytes) -> Any:
    """A payload as the protobuf message (to read a rebirth request)."""
    p = pb.Payload()
    p.ParseFromString(payload)
    return p
