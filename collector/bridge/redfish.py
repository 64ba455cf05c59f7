"""Redfish polling over HTTPS: chassis power and energy, found from the service root.

Discovery (once, again after a failure): ``/redfish/v1`` -> ``Chassis`` -> the configured
chassis (or the first one that has power readings) -> which of its resources carries them:

1. ``EnvironmentMetrics``: ``PowerWatts.Reading`` (W) and ``EnergykWh.Reading`` (kWh,
   cumulative) - the DMTF schema since 2020.4;
2. ``PowerSubsystem`` -> ``PowerSupplies`` -> each supply's ``Metrics``:
   ``InputPowerWatts.Reading`` summed (and ``EnergykWh.Reading`` summed when every supply has
   it);
3. the older ``Power`` resource: ``PowerControl[0].PowerConsumedWatts`` (W).

Requests are blocking urllib3 calls run on the bridge's Redfish thread pool (a BMC answers
in tens of milliseconds; a data centre has hundreds of them, not tens of thousands).
Certificates are checked unless the device's ``verify_tls`` is false. With session auth
the bridge logs in once (``SessionService/Sessions``) and again when the token is refused;
the password and the token never reach a log line or an error detail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import urllib3

from greendc.collector.bridge._base import DeviceError
from greendc.collector.bridge.values import Missing, RawValue
from greendc.config import RedfishDevice
from greendc.model import Quantity

_ROOT = "/redfish/v1"
_POWER_LIMITS = (0.0, 1e9)
_ENERGY_LIMITS = (0.0, 1e16)


@dataclass(frozen=True)
class _Plan:
    """Where a chassis keeps its power readings (what discovery found)."""

    kind: str  # "environment", "subsystem" or "power"
    uri: str


class RedfishPoller:
    """Polls one Redfish service for one chassis' power and energy."""

    def __init__(
        self, device: RedfishDevice, timeout_s: float, executor: ThreadPoolExecutor
    ) -> None:
        self.device = device
        self.timeout_s = timeout_s
        self.executor = executor
        self.base = device.url
        self.where = device.url
        self._http: urllib3.PoolManager | None = None
        self._token: str | None = None
        self._session_uri: str | None = None
        self._plan: _Plan | None = None

    # -- HTTP -------------------------------------------------------------------------
    @property
    def http(self) -> urllib3.PoolManager:
        """The connection pool, made at first use (a CA file may appear after start-up)."""
        if self._http is None:
            d = self.device
            try:
                if d.verify_tls:
                    ctx = ssl.create_default_context(cafile=str(d.ca_file) if d.ca_file else None)
                else:
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
            except (OSError, ssl.SSLError) as exc:
                raise DeviceError("tls", f"{self.where}: ca_file {d.ca_file}: {exc}") from exc
            self._http = urllib3.PoolManager(
                num_pools=2,
                maxsize=1,
                ssl_context=ctx,
                retries=False,
                timeout=urllib3.Timeout(total=self.timeout_s),
            )
        return self._http

    def _headers(self) -> dict[str, str]:
        h = {"Accept": "application/json", "OData-Version": "4.0"}
        if self.device.auth == "basic":
            h.update(
                urllib3.make_headers(
                    basic_auth=f"{self.device.username}:{self.device.password.get_secret_value()}"
                )
            )
        elif self._token is not None:
            h["X-Auth-Token"] = self._token
        return h

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        url = path if path.startswith("http") else self.base + path
        headers = self._headers()
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            r = self.http.request(method, url, body=body, headers=headers)
        except urllib3.exceptions.SSLError as exc:
            raise DeviceError("tls", f"{self.where}: TLS: {exc.__class__.__name__}") from exc
        except (urllib3.exceptions.TimeoutError, TimeoutError) as exc:
            raise DeviceError("timeout", f"{self.where}{path}: no answer") from exc
        except urllib3.exceptions.HTTPError as exc:
            raise DeviceError("unreachable", f"{self.where}{path}: {type(exc).__name__}") from exc
        return r

    def _get(self, path: str, *, login: bool = True) -> dict[str, Any]:
        r = self._request("GET", path)
        if r.status == 401 and self.device.auth == "session" and login:
            self._login()
            r = self._request("GET", path)
        if r.status in (401, 403):
            raise DeviceError("auth", f"{self.where}{path}: HTTP {r.status}")
        if r.status != 200:
            raise DeviceError("device_error", f"{self.where}{path}: HTTP {r.status}")
        try:
            doc = json.loads(r.data)
        except ValueError as exc:
            raise DeviceError("garbage", f"{self.where}{path}: not JSON") from exc
        if not isinstance(doc, dict):
            raise DeviceError("garbage", f"{self.where}{path}: not a JSON object")
        return doc

    def _login(self) -> None:
        self._token = None
        # The service root (readable without credentials) links the sessions collection.
        root = self._get(_ROOT, login=False)
        uri = _link(root.get("Links", {}).get("Sessions")) or f"{_ROOT}/SessionService/Sessions"
        body = json.dumps(
            {"UserName": self.device.username, "Password": self.device.password.get_secret_value()}
        ).encode()
        r = self._request("POST", uri, body)
        if r.status in (401, 403):
            raise DeviceError("auth", f"{self.where}: login refused (HTTP {r.status})")
        token = r.headers.get("X-Auth-Token")
        if r.status not in (200, 201) or not token:
            raise DeviceError("device_error", f"{self.where}: login answered HTTP {r.status}")
        self._token = token
        self._session_uri = r.headers.get("Location")

    # -- discovery and reading -----------------------------------------------------------
    def _discover(self) -> _Plan:
        root = self._get(_ROOT)
        chassis_uri = _link(root.get("Chassis"))
        if not chassis_uri:
            raise DeviceError("device_error", f"{self.where}: the service root has no Chassis")
        members = [_link(m) for m in self._get(chassis_uri).get("Members", [])]
        for uri in members:
            if not uri:
                continue
            chassis = self._get(uri)
            if self.device.chassis is not None and chassis.get("Id") != self.device.chassis:
                continue
            for kind, key in (
                ("environment", "EnvironmentMetrics"),
                ("subsystem", "PowerSubsystem"),
                ("power", "Power"),
            ):
                link = _link(chassis.get(key))
                if link:
                    return _Plan(kind, link)
            if self.device.chassis is not None:
                raise DeviceError(
                    "device_error", f"{self.where}{uri}: chassis has no power readings"
                )
        wanted = f"chassis {self.device.chassis!r}" if self.device.chassis else "a chassis"
        raise DeviceError("device_error", f"{self.where}: no {wanted} with power readings")

    def _read(self) -> list[RawValue]:
        if self.device.auth == "session" and self._token is None:
            self._login()
        if self._plan is None:
            self._plan = self._discover()
        plan = self._plan
        doc = self._get(plan.uri)
        if plan.kind == "environment":
            return [
                _reading(Quantity.POWER_W, doc.get("PowerWatts"), "W"),
                _reading(Quantity.ENERGY_WH, doc.get("EnergykWh"), "kWh"),
            ]
        if plan.kind == "power":
            controls = doc.get("PowerControl") or [{}]
            first = controls[0] if isinstance(controls, list) and controls else {}
            raw = first.get("PowerConsumedWatts", Missing("PowerControl[0].PowerConsumedWatts"))
            return [RawValue(Quantity.POWER_W, raw, "W", 1.0, _POWER_LIMITS)]
        supplies_uri = _link(doc.get("PowerSupplies"))
        if not supplies_uri:
            raise DeviceError("device_error", f"{self.where}{plan.uri}: no PowerSupplies")
        power: list[RawValue] = []
        energy: list[RawValue] = []
        for m in self._get(supplies_uri).get("Members", []):
            supply = self._get(_link(m) or "")
            metrics_uri = _link(supply.get("Metrics"))
            if not metrics_uri:
                continue
            metrics = self._get(metrics_uri)
            power.append(_reading(Quantity.POWER_W, metrics.get("InputPowerWatts"), "W"))
            energy.append(_reading(Quantity.ENERGY_WH, metrics.get("EnergykWh"), "kWh"))
        return [_total(Quantity.POWER_W, power, "W"), _total(Quantity.ENERGY_WH, energy, "kWh")]

    async def poll(self) -> list[RawValue]:
        """Discover once, then read the chassis' power (and energy) resource."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self.executor, self._read)
        except DeviceError:
            self._plan = None  # the service may have been replaced: discover again
            raise

    async def close(self) -> None:
        """Log out of the session (best effort) and close the connection pool."""
        if self._session_uri and self._token:
            loop = asyncio.get_running_loop()
            # Best effort: the BMC expires the session on its own.
            with contextlib.suppress(DeviceError):
                await loop.run_in_executor(None, self._request, "DELETE", self._session_uri)
        if self._http is not None:
            self._http.clear()
        self.executor.shutdown(wait=False)  # shared: the first close ends it, the rest no-op


def _link(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("@odata.id"), str):
        return str(obj["@odata.id"])
    return None


def _reading(quantity: Quantity, sensor: Any, unit: str) -> RawValue:
    """A DMTF SensorExcerpt ({"Reading": ...}) as a raw value."""
    limits = _POWER_LIMITS if quantity is Quantity.POWER_W else _ENERGY_LIMITS
    if not isinstance(sensor, dict) or "Reading" not in sensor:
        return RawValue(quantity, Missing(f"{unit} sensor excerpt without Reading"), unit)
    return RawValue(quantity, sensor["Reading"], unit, 1.0, limits)


def _total(quantity: Quantity, parts: list[RawValue], unit: str) -> RawValue:
    """The sum of every supply's reading, or the first part that is not a number."""
    limits = _POWER_LIMITS if quantity is Quantity.POWER_W else _ENERGY_LIMITS
    if not parts:
        return RawValue(quantity, Missing("no power supply reports metrics"), unit)
    total: float = 0
    for p in parts:
        if isinstance(p.raw, bool) or not isinstance(p.raw, int | float):
            return p
        total += p.raw
    return RawValue(quantity, total, unit, 1.0, limits)


def redfish_pollers(
    devices: list[tuple[RedfishDevice, float]], max_workers: int
) -> list[RedfishPoller]:
    """Pollers for (device, timeout) pairs sharing one thread pool."""
    executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="greendc-redfish")
    return [RedfishPoller(d, t, executor) for d, t in devices]
