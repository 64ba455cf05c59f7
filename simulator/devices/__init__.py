"""The simulated site as devices: the Modbus meters and SNMP agents a bridge config names,
served on their own addresses with the simulator's values.

:class:`SimulatedDevices` reads ``bridges.devices`` of a configuration and serves every
Modbus TCP device (one server per host:port, a unit per device), SNMP agent (one per
host:port; its community or v3 user taken from the config) and Redfish service (HTTPS with
a CA of its own, written to the device's ``ca_file`` when that file does not exist yet, so
the bridge can trust it) laid out like the device's profile. Each step it advances the
site simulation (:mod:`greendc.simulator.model`) and writes every bridged meter's power,
energy and temperature into its registers or resources, in the device's own units and
scale, so ``greendc bridge`` reads what ``greendc simulate`` would have published. A
BACnet device becomes a bacpypes3 device at its address whose analog points report
kilowatts, kilowatt-hours, degrees-celsius or liters.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from greendc.config import (
    BacnetDevice,
    ModbusDevice,
    ModbusRegister,
    RedfishDevice,
    Settings,
    SnmpDevice,
    SnmpValue,
)
from greendc.model import UNITS
from greendc.simulator.devices.bacnet import BacnetTestDevice
from greendc.simulator.devices.modbus import ModbusDevices
from greendc.simulator.devices.redfish import RedfishServer, environment_mockup, make_ca
from greendc.simulator.devices.snmp import SnmpAgent
from greendc.simulator.model import SiteSim

__all__ = ["BacnetTestDevice", "ModbusDevices", "RedfishServer", "SimulatedDevices", "SnmpAgent"]

# What a simulated BACnet point reports, by quantity: (BACnet units, divisor from canonical).
_BACNET_UNITS = {
    "power_w": ("kilowatts", 1000.0),
    "energy_wh": ("kilowatt-hours", 1000.0),
    "temp_c": ("degrees-celsius", 1.0),
    "water_l": ("liters", 1.0),
}

_ENV_METRICS = "/redfish/v1/Chassis/1U/EnvironmentMetrics"

log = logging.getLogger("greendc.simulator.devices")

_INT_TYPES = frozenset({"int16", "uint16", "int32", "uint32", "int64", "uint64"})
_INT_RANGE = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
_SUM_ROWS = 3  # a summed column (a UPS's output lines) is served as three rows
# A device temperature the site model does not produce (a UPS's battery): battery rooms are
# held near 25 C, the temperature battery life is rated at.
_DEVICE_TEMP_C = 25.0


def _device_value(canonical: float, quantity: Any, unit: str, scale: float) -> float:
    """What a device holds for a canonical value (the inverse of the bridge's conversion)."""
    return canonical / UNITS[quantity][unit] / scale


def _modbus_raw(reg: ModbusRegister, canonical: float) -> int | float:
    raw = _device_value(canonical, reg.quantity, reg.unit, reg.scale)
    if reg.type in _INT_TYPES:
        lo, hi = _INT_RANGE[reg.type]
        return max(lo, min(hi, round(raw)))
    return raw


def _snmp_values(v: SnmpValue, index: int, canonical: float) -> dict[str, tuple[int, object]]:
    raw = round(_device_value(canonical, v.quantity, v.unit, v.scale))
    tag = 70 if v.quantity.value in ("energy_wh", "water_l") else 2  # Counter64 / Integer32
    if tag == 2:
        raw = max(-(2**31), min(2**31 - 1, raw))
    base = ".".join(str(p) for p in v.oid_for(index))
    if v.read == "get":
        return {base: (tag, raw)}
    share, rest = divmod(raw, _SUM_ROWS)
    return {f"{base}.{row}": (tag, share + (rest if row == 1 else 0)) for row in (1, 2, 3)}


class SimulatedDevices:
    """Serves the configured bridge devices with simulated values until :meth:`stop`."""

    def __init__(self, settings: Settings, *, seed: int = 1, step_s: float = 1.0) -> None:
        if settings.bridges is None or not settings.bridges.devices:
            raise ValueError("the config has no bridges.devices to simulate")
        self.settings = settings
        self.b = settings.bridges
        self.step_s = step_s
        self.sims = {s.name: SiteSim(s, seed) for s in settings.sites}
        self.modbus: dict[tuple[str, int], ModbusDevices] = {}
        self.agents: dict[tuple[str, int], SnmpAgent] = {}
        self.redfish: dict[str, RedfishServer] = {}  # device id -> its service
        self.bacnet: dict[str, BacnetTestDevice] = {}  # device id -> the device
        self.skipped: list[str] = []
        self._tls_dir: Path | None = None
        self.steps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatedDevices:
        """Start every server, write the first values, and keep them moving in a thread."""
        units: dict[tuple[str, int], dict[int, Any]] = defaultdict(dict)
        for d in self.b.devices:
            if isinstance(d, ModbusDevice):
                units[(d.host, d.port)][d.unit_id] = self.b.modbus_profile(d.profile)
            elif isinstance(d, SnmpDevice):
                key = (d.host, d.port)
                if key not in self.agents:
                    self.agents[key] = SnmpAgent(
                        community=d.community.get_secret_value() if d.community else "public",
                        user=d.user or "greendc",
                        auth_key=d.auth_key.get_secret_value() if d.auth_key else "auth-key-123",
                        priv_key=d.priv_key.get_secret_value() if d.priv_key else "priv-key-456",
                        host=d.host,
                        port=d.port,
                    )
            elif isinstance(d, RedfishDevice):
                self.redfish[d.id] = self._redfish(d)
            elif isinstance(d, BacnetDevice):
                bhost, _, bport = d.address.partition(":")
                points = {p.object: (0.0, _BACNET_UNITS[p.quantity.value][0]) for p in d.points}
                instance = (
                    d.device_instance if d.device_instance is not None else 100 + len(self.bacnet)
                )
                self.bacnet[d.id] = BacnetTestDevice(
                    instance, points, host=bhost, port=int(bport or 47808)
                )
            else:
                self.skipped.append(d.id)
        for (host, port), by_unit in units.items():
            self.modbus[(host, port)] = ModbusDevices(by_unit, port=port, host=host)
        self.update(time.time())
        for gw in self.modbus.values():
            gw.start()
        for agent in self.agents.values():
            agent.start()
        for server in self.redfish.values():
            server.start()
        for bac in self.bacnet.values():
            bac.start()
        self._thread = threading.Thread(target=self._run, name="simulated-devices", daemon=True)
        self._thread.start()
        return self

    def _redfish(self, d: RedfishDevice) -> RedfishServer:
        if self._tls_dir is None:
            self._tls_dir = Path(tempfile.mkdtemp(prefix="greendc-sim-tls-"))
            self._ca, self._cert, self._key = make_ca(self._tls_dir)
        if d.ca_file is not None and not d.ca_file.exists():
            d.ca_file.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self._ca, d.ca_file)  # so the bridge can check the certificate
        parts = urlsplit(d.url)
        return RedfishServer(
            environment_mockup("1U"),
            self._cert,
            self._key,
            username=d.username,
            password=d.password.get_secret_value(),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 443,
        )

    def update(self, ts_s: float) -> None:
        """Advance every site to ``ts_s`` and write the bridged meters' values."""
        fields: dict[tuple[str, str], dict[str, float]] = {}
        for site, sim in self.sims.items():
            for meter, meter_fields in sim.step(ts_s):
                fields[(site, meter)] = meter_fields
        for d in self.b.devices:
            values = fields.get((d.site, d.meter))
            if values is None:
                continue
            values = {"temp_c": _DEVICE_TEMP_C, **values}
            if isinstance(d, ModbusDevice):
                gw = self.modbus[(d.host, d.port)]
                for reg in self.b.modbus_profile(d.profile).registers:
                    if reg.quantity.value in values:
                        gw.set(d.unit_id, reg, _modbus_raw(reg, values[reg.quantity.value]))
            elif isinstance(d, SnmpDevice):
                agent = self.agents[(d.host, d.port)]
                for v in self.b.snmp_profile(d.profile).values:
                    if v.quantity.value in values:
                        agent.set(_snmp_values(v, d.index, values[v.quantity.value]))
            elif isinstance(d, BacnetDevice) and d.id in self.bacnet:
                bac = self.bacnet[d.id]
                for p in d.points:
                    if p.quantity.value in values:
                        divisor = _BACNET_UNITS[p.quantity.value][1]
                        bac.set(p.object, values[p.quantity.value] / divisor / p.scale)
            elif isinstance(d, RedfishDevice) and d.id in self.redfish:
                server = self.redfish[d.id]
                if "power_w" in values:
                    server.set_reading(_ENV_METRICS, "PowerWatts.Reading", values["power_w"])
                if "energy_wh" in values:
                    kwh = values["energy_wh"] / 1000.0
                    server.set_reading(_ENV_METRICS, "EnergykWh.Reading", kwh)
        self.steps += 1

    def _run(self) -> None:
        while not self._stop.wait(self.step_s):
            try:
                self.update(time.time())
            except Exception:  # a broken step must not end the simulation silently
                log.exception("simulated devices: a step failed")

    def stop(self) -> None:
        """Stop updating and close every server."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for gw in self.modbus.values():
            gw.close()
        for agent in self.agents.values():
            agent.close()
        for server in self.redfish.values():
            server.stop()
        for bac in self.bacnet.values():
            bac.close()
        if self._tls_dir is not None:
            shutil.rmtree(self._tls_dir, ignore_errors=True)

    def __enter__(self) -> SimulatedDevices:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
