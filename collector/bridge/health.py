"""The bridge's health as plain data, and the Prometheus families built from it per scrape.

Per device: up or failing (and why), when it last answered, how many polls in a row failed;
counters of poll errors and refused values by reason. :class:`BridgeCollector` builds metric
families from a :meth:`Health.snapshot` at scrape time and keeps nothing between scrapes.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from greendc.catalogue import metric

_DETAIL_CHARS = 200  # a failure's detail is a label value: keep it short


@dataclass
class DeviceHealth:
    """What the bridge knows about one device (mutated under :class:`Health`'s lock)."""

    device: str
    protocol: str
    site: str
    meter: str
    up: bool = False
    polled: bool = False  # at least one poll finished (before that the device is not 'up')
    consecutive_failures: int = 0
    last_success_s: float | None = None
    last_reason: str = ""
    last_detail: str = ""
    errors: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    status: dict[str, float] = field(default_factory=dict)  # a profile's states (UPS load)

    def copy(self) -> DeviceHealth:
        """A copy that later polls do not change."""
        return DeviceHealth(
            self.device,
            self.protocol,
            self.site,
            self.meter,
            self.up,
            self.polled,
            self.consecutive_failures,
            self.last_success_s,
            self.last_reason,
            self.last_detail,
            Counter(self.errors),
            Counter(self.refused),
            dict(self.status),
        )


@dataclass(frozen=True)
class HealthSnapshot:
    """The bridge's health at one instant."""

    devices: tuple[DeviceHealth, ...]
    polls: dict[tuple[str, str], int]  # (protocol, ok|failed) -> count
    published: int
    acknowledged: int
    mqtt_connected: bool

    def device(self, name: str) -> DeviceHealth:
        """The health of the device of that name (KeyError if unknown)."""
        for d in self.devices:
            if d.device == name:
                return d
        raise KeyError(name)


class Health:
    """The mutable health of a running bridge; every method is thread-safe."""

    def __init__(self, devices: list[DeviceHealth]) -> None:
        self._lock = threading.Lock()
        self._devices = {d.device: d for d in devices}
        self._polls: Counter[tuple[str, str]] = Counter()
        self.published = 0
        self.acknowledged = 0
        self.mqtt_connected = False

    def success(
        self,
        device: str,
        now_s: float,
        refused: list[str],
        status: dict[str, float] | None = None,
    ) -> None:
        """A poll of ``device`` answered; ``refused`` lists the reasons of values left out,
        ``status`` the profile's device states (replacing the last poll's)."""
        with self._lock:
            d = self._devices[device]
            if status is not None:
                d.status = dict(status)
            d.up = d.polled = True
            d.consecutive_failures = 0
            d.last_success_s = now_s
            d.last_reason = d.last_detail = ""
            d.refused.update(refused)
            self._polls[(d.protocol, "ok")] += 1

    def failure(self, device: str, reason: str, detail: str) -> int:
        """A poll of ``device`` failed; returns the failures in a row so far."""
        with self._lock:
            d = self._devices[device]
            d.up = False
            d.polled = True
            d.consecutive_failures += 1
            d.last_reason = reason
            d.last_detail = detail[:_DETAIL_CHARS]
            d.errors[reason] += 1
            self._polls[(d.protocol, "failed")] += 1
            return d.consecutive_failures

    def add_published(self, n: int) -> None:
        """Count readings handed to MQTT."""
        with self._lock:
            self.published += n

    def add_acknowledged(self, n: int) -> None:
        """Count readings the broker acknowledged (QoS 1 PUBACK)."""
        with self._lock:
            self.acknowledged += n

    def snapshot(self) -> HealthSnapshot:
        """A consistent copy (taken under the lock, used outside it)."""
        with self._lock:
            return HealthSnapshot(
                tuple(d.copy() for d in self._devices.values()),
                dict(self._polls),
                self.published,
                self.acknowledged,
                self.mqtt_connected,
            )


def _gauge(name: str, labels: tuple[str, ...] | None = None) -> GaugeMetricFamily:
    m = metric(name)
    return GaugeMetricFamily(m.name, m.help, labels=list(labels or m.labels))


def _counter(name: str) -> CounterMetricFamily:
    m = metric(name)
    return CounterMetricFamily(m.name.removesuffix("_total"), m.help, labels=list(m.labels))


class BridgeCollector(Collector):
    """Builds the bridge's metric families from a fresh snapshot at every scrape."""

    def __init__(self, snapshot: Callable[[], HealthSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        """The families of the catalogue's greendc_bridge_* metrics."""
        s = self._snapshot()
        up = _gauge("greendc_bridge_device_up")
        failing = _gauge("greendc_bridge_device_failing")
        last = _gauge("greendc_bridge_device_last_success_timestamp_seconds")
        streak = _gauge("greendc_bridge_device_consecutive_failures")
        errors = _counter("greendc_bridge_poll_errors_total")
        refused = _counter("greendc_bridge_values_refused_total")
        status = _gauge("greendc_bridge_device_status")
        for d in s.devices:
            for name, value in sorted(d.status.items()):
                status.add_metric([d.device, name], value)
            up.add_metric([d.device, d.protocol, d.site, d.meter], 1.0 if d.up else 0.0)
            if d.polled and not d.up:
                failing.add_metric([d.device, d.last_reason, d.last_detail], 1.0)
            if d.last_success_s is not None:
                last.add_metric([d.device], d.last_success_s)
            streak.add_metric([d.device], float(d.consecutive_failures))
            for reason, n in sorted(d.errors.items()):
                errors.add_metric([d.device, reason], float(n))
            for reason, n in sorted(d.refused.items()):
                refused.add_metric([d.device, reason], float(n))
        polls = _counter("greendc_bridge_polls_total")
        for (protocol, outcome), n in sorted(s.polls.items()):
            polls.add_metric([protocol, outcome], float(n))
        published = _counter("greendc_bridge_readings_published_total")
        published.add_metric([], float(s.published))
        acked = _counter("greendc_bridge_readings_acknowledged_total")
        acked.add_metric([], float(s.acknowledged))
        connected = _gauge("greendc_bridge_mqtt_connected")
        connected.add_metric([], 1.0 if s.mqtt_connected else 0.0)
        yield from (up, failing, last, streak, errors, refused, status)
        yield from (polls, published, acked, connected)
