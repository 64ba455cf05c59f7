"""SNMP v2c / v3 polling with pysnmp: one GET for a profile's single values, GETBULK walks
for its summed table columns, one SNMP engine for every device of the bridge.

v3 is always authPriv (HMAC-SHA family or MD5 authentication, AES or DES privacy): a data
centre's power readings cross the management network, and a key never appears in a log.
"""

from __future__ import annotations

import logging
from typing import Any

from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as usm
from pysnmp.proto import errind
from pysnmp.proto.rfc1905 import EndOfMibView, NoSuchInstance, NoSuchObject

from greendc.collector.bridge._base import DeviceError
from greendc.collector.bridge.values import Missing, RawValue
from greendc.config import SnmpDevice, SnmpProfile

log = logging.getLogger("greendc.bridge.snmp")

_AUTH = {
    "MD5": usm.USM_AUTH_HMAC96_MD5,
    "SHA": usm.USM_AUTH_HMAC96_SHA,
    "SHA224": usm.USM_AUTH_HMAC128_SHA224,
    "SHA256": usm.USM_AUTH_HMAC192_SHA256,
    "SHA384": usm.USM_AUTH_HMAC256_SHA384,
    "SHA512": usm.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    "DES": usm.USM_PRIV_CBC56_DES,
    "3DES": usm.USM_PRIV_CBC168_3DES,
    "AES": usm.USM_PRIV_CFB128_AES,
    "AES192": usm.USM_PRIV_CFB192_AES,
    "AES256": usm.USM_PRIV_CFB256_AES,
}
# pysnmp error indications that mean the credentials were refused.
_AUTH_ERRORS = (
    errind.WrongDigest,
    errind.UnknownUserName,
    errind.UnknownSecurityName,
    errind.DecryptionError,
    errind.UnsupportedSecurityLevel,
    errind.AuthenticationFailure,
    errind.NotInTimeWindow,
)
_ABSENT = (NoSuchInstance, NoSuchObject, EndOfMibView)


def _credentials(d: SnmpDevice) -> CommunityData | UsmUserData:
    if d.version == "2c":
        assert d.community is not None  # the config requires it for v2c
        return CommunityData(d.community.get_secret_value(), mpModel=1)
    assert d.user and d.auth_key and d.priv_key  # the config requires them for v3
    return UsmUserData(
        d.user,
        d.auth_key.get_secret_value(),
        d.priv_key.get_secret_value(),
        authProtocol=_AUTH[d.auth_protocol],
        privProtocol=_PRIV[d.priv_protocol],
    )


def _number(value: Any) -> object:
    """An SNMP value as the int a numeric type holds; anything else as itself (refused)."""
    if isinstance(value, _ABSENT):
        return Missing(type(value).__name__)
    # Integer32, Counter32, Counter64, Gauge32, Unsigned32 and TimeTicks are all Integers.
    if isinstance(value, univ.Integer):
        return int(value)
    return value.prettyPrint() if hasattr(value, "prettyPrint") else value


class _Engine:
    """The SNMP engine every poller of a bridge shares, closed once."""

    def __init__(self) -> None:
        self.engine = SnmpEngine()
        self.closed = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.engine.close_dispatcher()


class SnmpPoller:
    """Polls one SNMP agent by its profile."""

    def __init__(
        self, device: SnmpDevice, profile: SnmpProfile, shared: _Engine, timeout_s: float
    ) -> None:
        self.device = device
        self.profile = profile
        self.shared = shared
        self.engine = shared.engine
        self.timeout_s = timeout_s
        self.auth = _credentials(device)
        self.context = ContextData(contextName=device.context_name)
        self.gets = [v for v in profile.values if v.read == "get"]
        self.sums = [v for v in profile.values if v.read == "sum"]
        self._target: UdpTransportTarget | None = None
        self.where = f"{device.host}:{device.port}"
        self.status: dict[str, float] = {}  # the profile's states from the last poll

    async def _transport(self) -> UdpTransportTarget:
        if self._target is None:
            try:
                self._target = await UdpTransportTarget.create(
                    (self.device.host, self.device.port), timeout=self.timeout_s, retries=0
                )
            except Exception as exc:  # pysnmp wraps resolver errors in its own types
                raise DeviceError("unreachable", f"{self.where}: {exc}") from exc
        return self._target

    def _check(self, error_indication: Any, error_status: Any, what: str) -> None:
        if error_indication:
            if isinstance(error_indication, errind.RequestTimedOut):
                raise DeviceError("timeout", f"{self.where}: {what}: no answer")
            if isinstance(error_indication, _AUTH_ERRORS):
                raise DeviceError("auth", f"{self.where}: {what}: {error_indication}")
            raise DeviceError("device_error", f"{self.where}: {what}: {error_indication}")
        if error_status:
            raise DeviceError("device_error", f"{self.where}: {what}: {error_status.prettyPrint()}")

    async def poll(self) -> list[RawValue]:
        """One GET for the single values and states, GETBULK walks for the columns."""
        target = await self._transport()
        index = self.device.index
        gets = [(v.oid_for(index), v) for v in self.gets]
        status_gets = [(st.oid_for(index), st) for st in self.profile.status if st.read == "get"]
        out: list[RawValue] = []
        status: dict[str, float] = {}
        if gets or status_gets:
            oids = [ObjectType(ObjectIdentity(o)) for o, _ in gets + status_gets]
            ei, es, _ix, binds = await get_cmd(
                self.engine, self.auth, target, self.context, *oids, lookupMib=False
            )
            self._check(ei, es, "GET")
            if len(binds) != len(oids):
                raise DeviceError("garbage", f"{self.where}: {len(binds)} values answered")
            answers = [_number(value) for _name, value in binds]
            for (_oid, v), answer in zip(gets, answers[: len(gets)], strict=True):
                out.append(RawValue(v.quantity, answer, v.unit, v.scale, v.limits))
            for (_oid, st), answer in zip(status_gets, answers[len(gets) :], strict=True):
                if isinstance(answer, int):
                    status[st.name] = float(answer)
        for v in self.sums:
            rows = await self._column(target, v.oid_for(index))
            ints = [r for r in rows if isinstance(r, int)]
            bad = next((r for r in rows if not isinstance(r, int)), None)
            total: object = sum(ints) if ints else Missing("no rows under the column")
            out.append(
                RawValue(v.quantity, total if bad is None else bad, v.unit, v.scale, v.limits)
            )
        for st in self.profile.status:
            if st.read == "get":
                continue
            numbers = [
                r for r in await self._column(target, st.oid_for(index)) if isinstance(r, int)
            ]
            if numbers:
                status[st.name] = float(sum(numbers) if st.read == "sum" else max(numbers))
        self.status = status
        return out

    async def _column(self, target: UdpTransportTarget, column: tuple[int, ...]) -> list[object]:
        """Every row of a table column, walked with GETBULK."""
        rows: list[object] = []
        cursor = column
        while True:
            ei, es, _ix, binds = await bulk_cmd(
                self.engine,
                self.auth,
                target,
                self.context,
                0,
                self.device.max_repetitions,
                ObjectType(ObjectIdentity(cursor)),
                lookupMib=False,
            )
            self._check(ei, es, "GETBULK")
            inside = 0
            for name, value in binds:
                oid = tuple(name)
                if oid[: len(column)] != column or isinstance(value, _ABSENT):
                    break
                rows.append(_number(value))
                cursor = oid
                inside += 1
            if inside < len(binds) or not binds:
                return rows

    async def close(self) -> None:
        """Close the shared engine (the first poller to close does it)."""
        self.shared.close()


def snmp_pollers(devices: list[tuple[SnmpDevice, SnmpProfile, float]]) -> list[SnmpPoller]:
    """Pollers for (device, profile, timeout) triples on one shared SNMP engine."""
    shared = _Engine()
    return [SnmpPoller(d, p, shared, t) for d, p, t in devices]
