"""BACnet/IP polling with bacpypes3: present values of analog points, in their own units.

The bridge is a BACnet device of its own (``bridges.bacnet_local_address``, instance
``bridges.bacnet_device_instance``); every device's points are read with one
ReadPropertyMultiple (presentValue and units of each object), so a chiller's power, its
supply temperature and the outdoor temperature arrive in one round trip. The object's
``units`` decides the conversion: a kilowatts point becomes watts, degrees-fahrenheit
becomes Celsius; a point whose units do not fit its quantity is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bacpypes3.apdu import ErrorRejectAbortNack
from bacpypes3.app import Application
from bacpypes3.basetypes import ErrorType
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject
from bacpypes3.pdu import Address
from bacpypes3.primitivedata import ObjectIdentifier
from bacpypes3.vendor import get_vendor_info

from greendc.collector.bridge._base import DeviceError
from greendc.collector.bridge.values import Missing, RawValue, WrongUnit
from greendc.config import BacnetDevice, BacnetPoint
from greendc.model import CANONICAL_UNIT, UNITS, Quantity

# BACnet engineering units (as bacpypes3 spells them) -> greendc units.
_UNITS = {
    "watts": "W",
    "kilowatts": "kW",
    "megawatts": "MW",
    "watt-hours": "Wh",
    "kilowatt-hours": "kWh",
    "megawatt-hours": "MWh",
    "joules": "J",
    "degrees-celsius": "C",
    "liters": "L",
    "cubic-meters": "m3",
}
_ASHRAE = get_vendor_info(0)


class _Local:
    """The bridge's own BACnet application, shared by every BACnet poller, made in the loop."""

    def __init__(self, address: str, instance: int) -> None:
        self.address = address
        self.instance = instance
        self.app: Application | None = None

    def get(self) -> Application:
        if self.app is None:
            device = DeviceObject(
                objectIdentifier=("device", self.instance),
                objectName="greendc-bridge",
                vendorIdentifier=999,
            )
            port = NetworkPortObject(
                self.address, objectIdentifier=("network-port", 1), objectName="NetworkPort-1"
            )
            self.app = Application.from_object_list([device, port])
        return self.app

    def close(self) -> None:
        if self.app is not None:
            self.app.close()
            self.app = None


def _value(point: BacnetPoint, value: Any, units: Any) -> RawValue:
    """A point's present value with the unit its ``units`` property gives."""
    canonical = CANONICAL_UNIT[point.quantity]
    if isinstance(value, ErrorType):
        return RawValue(point.quantity, Missing(f"{point.object}: {value.errorCode}"), canonical)
    name = "no-units" if units is None or isinstance(units, ErrorType) else str(units)
    raw: object = float(value) if isinstance(value, int | float) else value
    if name == "degrees-fahrenheit" and point.quantity is Quantity.TEMP_C:
        if isinstance(raw, float):
            raw = (raw - 32.0) * 5.0 / 9.0
        return RawValue(point.quantity, raw, "C", point.scale, point.limits)
    unit = point.unit if name == "no-units" else _UNITS.get(name)
    if unit is None or unit not in UNITS[point.quantity]:
        # Not convertible: refuse rather than guess (a kilowatts point mapped as temp_c).
        return RawValue(point.quantity, WrongUnit(name), canonical)
    return RawValue(point.quantity, raw, unit, point.scale, point.limits)


class BacnetPoller:
    """Polls one BACnet device's analog points with one ReadPropertyMultiple."""

    def __init__(self, device: BacnetDevice, local: _Local, timeout_s: float) -> None:
        self.device = device
        self.local = local
        self.timeout_s = timeout_s
        self.address = Address(device.address)
        self.where = f"{device.address}" + (
            f" (device {device.device_instance})" if device.device_instance is not None else ""
        )
        self.request: list[Any] = []
        for p in device.points:
            self.request += [ObjectIdentifier(p.object), ["present-value", "units"]]

    async def poll(self) -> list[RawValue]:
        """presentValue and units of every point, in one request."""
        app = self.local.get()
        try:
            answer = await asyncio.wait_for(
                app.read_property_multiple(self.address, list(self.request), vendor_info=_ASHRAE),
                self.timeout_s,
            )
        except TimeoutError:
            raise DeviceError("timeout", f"{self.where}: no answer") from None
        except ErrorRejectAbortNack as exc:
            raise DeviceError("device_error", f"{self.where}: {exc}") from exc
        found: dict[tuple[str, str], Any] = {}
        for objid, prop, _index, value in answer:
            found[(f"{objid[0]},{objid[1]}", str(prop))] = value
        out = []
        for p in self.device.points:
            objid = ObjectIdentifier(p.object)
            key = f"{objid[0]},{objid[1]}"
            if (key, "present-value") not in found:
                raise DeviceError("garbage", f"{self.where}: no present-value for {p.object}")
            out.append(_value(p, found[(key, "present-value")], found.get((key, "units"))))
        return out

    async def close(self) -> None:
        """Close the shared BACnet application (the first close does it)."""
        self.local.close()


def bacnet_pollers(
    devices: list[tuple[BacnetDevice, float]], local_address: str, instance: int
) -> list[BacnetPoller]:
    """Pollers for (device, timeout) pairs sharing the bridge's BACnet application."""
    local = _Local(local_address, instance)
    return [BacnetPoller(d, local, t) for d, t in devices]
