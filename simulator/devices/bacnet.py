"""A simulated BACnet/IP device: a bacpypes3 application on UDP (simulator and tests).

:class:`BacnetTestDevice` runs a device object with analog input/value objects (present
value and engineering units set by its owner) in its own thread and event loop, on a free
UDP port of 127.0.0.1 unless given one. It can be stopped (the device goes away) and
started again on the same port.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from bacpypes3.app import Application
from bacpypes3.local.analog import AnalogInputObject, AnalogValueObject
from bacpypes3.local.device import DeviceObject
from bacpypes3.local.networkport import NetworkPortObject

from greendc.simulator.devices.snmp import LOOPBACK, free_udp_port

_CLASSES: dict[str, Any] = {"analog-input": AnalogInputObject, "analog-value": AnalogValueObject}


class BacnetTestDevice:
    """A BACnet/IP device with analog objects on a free loopback UDP port."""

    def __init__(
        self,
        instance: int,
        points: dict[str, tuple[float, str]],
        host: str = LOOPBACK,
        port: int | None = None,
    ) -> None:
        """``points`` maps ``analog-input,1`` to (present value, units such as kilowatts)."""
        self.instance = instance
        self.points = dict(points)
        self.host = host
        self.port = port or free_udp_port(host)
        self.address = f"{host}:{self.port}"
        self._objects: dict[str, Any] = {}
        self._app: Application | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bacnet-device")
        self._thread.daemon = True
        self._thread.start()

    def _call(self, fn: Any) -> Any:
        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def set(self, obj: str, value: float) -> None:
        """Change a point's present value."""
        self.points[obj] = (value, self.points[obj][1])

        def apply() -> None:
            if obj in self._objects:
                self._objects[obj].presentValue = value

        self._call(apply)

    def start(self) -> BacnetTestDevice:
        """Start answering (again, on the same port)."""

        def build() -> None:
            device = DeviceObject(
                objectIdentifier=("device", self.instance),
                objectName=f"test-device-{self.instance}",
                vendorIdentifier=999,
            )
            port = NetworkPortObject(
                f"{self.host}/8:{self.port}",
                objectIdentifier=("network-port", 1),
                objectName="NetworkPort-1",
            )
            self._objects = {}
            for name, (value, units) in self.points.items():
                kind, _, number = name.partition(",")
                self._objects[name] = _CLASSES[kind](
                    objectIdentifier=(kind, int(number)),
                    objectName=name.replace(",", "-"),
                    presentValue=value,
                    units=units,
                )
            self._app = Application.from_object_list([device, port, *self._objects.values()])

        self._call(build)
        return self

    def stop(self) -> None:
        """Stop answering and close the socket."""

        def close() -> None:
            if self._app is not None:
                self._app.close()
                self._app = None

        self._call(close)

    def close(self) -> None:
        """Stop the device and its event loop thread."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> BacnetTestDevice:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
