"""``greendc bridge``: poll the configured devices, publish native readings, serve /metrics.

The asyncio loop (scheduler and pollers) runs in one named thread; paho's network thread
publishes; the /metrics server has its own. :class:`Bridge` is the lifecycle around them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable

from greendc._errors import ConfigError, GreendcError
from greendc.collector.bridge._base import Poller
from greendc.collector.bridge.health import DeviceHealth, Health, HealthSnapshot
from greendc.collector.bridge.publish import Publisher
from greendc.collector.bridge.scheduler import Job, Scheduler
from greendc.config import (
    BacnetDevice,
    BridgeDevice,
    BridgeSettings,
    ModbusDevice,
    RedfishDevice,
    Settings,
    SnmpDevice,
)

log = logging.getLogger("greendc.bridge")

# Builds the pollers once the event loop runs (asyncio objects belong to their loop).
PollerFactory = Callable[[BridgeSettings], list[tuple[BridgeDevice, Poller]]]


def _timeout(b: BridgeSettings, d: BridgeDevice) -> float:
    return d.timeout_seconds if d.timeout_seconds is not None else b.timeout_seconds


def build_pollers(b: BridgeSettings) -> list[tuple[BridgeDevice, Poller]]:
    """One poller per configured device, each protocol imported only if it is used."""
    out: list[tuple[BridgeDevice, Poller]] = []
    modbus = [d for d in b.devices if isinstance(d, ModbusDevice)]
    if modbus:
        from greendc.collector.bridge.modbus import modbus_pollers

        triples = [(d, b.modbus_profile(d.profile), _timeout(b, d)) for d in modbus]
        out += zip(modbus, modbus_pollers(triples), strict=True)
    snmp = [d for d in b.devices if isinstance(d, SnmpDevice)]
    if snmp:
        from greendc.collector.bridge.snmp import snmp_pollers

        snmp_triples = [(d, b.snmp_profile(d.profile), _timeout(b, d)) for d in snmp]
        out += zip(snmp, snmp_pollers(snmp_triples), strict=True)
    redfish = [d for d in b.devices if isinstance(d, RedfishDevice)]
    if redfish:
        from greendc.collector.bridge.redfish import redfish_pollers

        pairs = [(d, _timeout(b, d)) for d in redfish]
        workers = min(32, b.max_concurrency, len(redfish))
        out += zip(redfish, redfish_pollers(pairs, workers), strict=True)
    bacnet = [d for d in b.devices if isinstance(d, BacnetDevice)]
    if bacnet:
        from greendc.collector.bridge.bacnet import bacnet_pollers

        bpairs = [(d, _timeout(b, d)) for d in bacnet]
        pollers = bacnet_pollers(bpairs, b.bacnet_local_address, b.bacnet_device_instance)
        out += zip(bacnet, pollers, strict=True)
    return out


class Bridge:
    """Polls devices and publishes their readings until :meth:`stop`."""

    def __init__(self, settings: Settings, pollers: PollerFactory = build_pollers) -> None:
        if settings.bridges is None:
            raise ConfigError("bridges: is missing: `greendc bridge` needs devices to poll")
        self.settings = settings
        self.b: BridgeSettings = settings.bridges
        self._factory = pollers
        self.health = Health(
            [DeviceHealth(d.id, d.protocol, d.site, d.meter) for d in self.b.devices]
        )
        self.publisher = Publisher(
            settings.mqtt, self.b.client_id, self.b.topic_prefix, self.health
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def snapshot(self) -> HealthSnapshot:
        """The bridge's health now (for /metrics and tests)."""
        return self.health.snapshot()

    def start(self) -> None:
        """Connect to the broker and start polling in the background."""
        # pymodbus logs every failed request at ERROR; the bridge reports them itself.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        self.publisher.start()
        self._thread = threading.Thread(target=self._run, name="greendc-bridge", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self.error is not None:
            self.publisher.stop(drain_timeout_s=0)
            raise GreendcError(f"the bridge could not start polling: {self.error}") from self.error

    def wait_connected(self, timeout_s: float) -> bool:
        """Whether the MQTT connection is up within ``timeout_s``."""
        return self.publisher.connected.wait(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported by stop(); the thread must not die silently
            log.exception("the bridge's polling loop failed")
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        pairs = self._factory(self.b)
        jobs = [
            Job(
                d.id,
                d.site,
                d.meter,
                poller,
                d.interval_seconds if d.interval_seconds is not None else self.b.interval_seconds,
                deadline_s=max(30.0, 20 * _timeout(self.b, d)),
            )
            for d, poller in pairs
        ]
        scheduler = Scheduler(
            jobs,
            self.health,
            self.publisher.publish,
            jitter_fraction=self.b.jitter_fraction,
            max_concurrency=self.b.max_concurrency,
            backoff_max_s=self.b.backoff_max_seconds,
        )
        log.info("bridge polling %d devices", len(jobs))
        self._ready.set()
        try:
            await scheduler.run(self._stop)
        finally:
            for _d, poller in pairs:
                await poller.close()

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop polling, let acknowledged delivery finish, disconnect."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)
        self.publisher.stop()

    def __enter__(self) -> Bridge:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()
