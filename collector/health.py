"""The agent's own health counters and histograms.

Counters are plain ints bumped from one thread each (the MQTT thread, or one sink's
worker); readers copy them at scrape time, which is safe under the GIL for ints.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter
from dataclasses import dataclass, field

from greendc.catalogue import METRICS
from greendc.snapshot import Histogram


class Hist:
    """A cumulative histogram with fixed upper bounds (Prometheus semantics)."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Record one observation."""
        i = bisect.bisect_left(self._bounds, value)
        with self._lock:
            self._counts[i] += 1
            self._sum += value

    def snapshot(self) -> Histogram:
        """Cumulative bucket counts, count and sum."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        cum = 0
        buckets = []
        for bound, c in zip(self._bounds, counts, strict=False):
            cum += c
            buckets.append((bound, cum))
        cum += counts[-1]
        buckets.append((float("inf"), cum))
        return Histogram(buckets=tuple(buckets), count=cum, sum=total)


def _latency_hist() -> Hist:
    return Hist(METRICS["greendc_sink_write_duration_seconds"].buckets)


def _batch_hist() -> Hist:
    return Hist(METRICS["greendc_sink_batch_size_readings"].buckets)


@dataclass
class SinkStats:
    """Counters of one sink."""

    written: int = 0
    failures: int = 0
    dropped: int = 0
    rejected: int = 0
    last_success_s: float | None = None
    write_seconds: Hist = field(default_factory=_latency_hist)
    batch_readings: Hist = field(default_factory=_batch_hist)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add_dropped(self, readings: int) -> None:
        """Count readings this sink will not store (from any thread)."""
        with self._lock:
            self.dropped += readings


@dataclass
class AgentStats:
    """Counters of the agent."""

    messages_received: int = 0
    readings_accepted: int = 0
    rejections: Counter[str] = field(default_factory=Counter)
    ignored: Counter[str] = field(default_factory=Counter)
    mqtt_connected: bool = False
    mqtt_connections: int = 0
    series_refused: int = 0
