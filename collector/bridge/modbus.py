"""Modbus TCP polling with pymodbus: one connection per gateway, one request at a time on it.

Many meters often sit behind one Modbus TCP gateway (RS-485 behind, TCP in front), told apart
by their unit id. Such a gateway serves one request at a time, so every device at one
host:port shares a :class:`Connection` and takes turns on its lock; devices on different
gateways are polled in parallel. A request that times out or answers garbage closes the
connection (transaction ids may be out of step) and the next poll connects afresh.
"""

from __future__ import annotations

import asyncio
import logging

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from greendc.collector.bridge._base import DeviceError
from greendc.collector.bridge.registers import Read, decode, plan_reads
from greendc.collector.bridge.values import RawValue
from greendc.config import ModbusDevice, ModbusProfile

log = logging.getLogger("greendc.bridge.modbus")


class Connection:
    """A Modbus TCP connection shared by every device at one host:port."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | None = None
        # Bytes received on this connection: a request that gets bytes back but no response
        # pymodbus can decode met a device answering garbage, not a silent one.
        self._received = 0

    def _trace(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            self._received += len(data)
        return data

    async def _ensure(self, timeout_s: float) -> AsyncModbusTcpClient:
        if self._client is not None and self._client.connected:
            return self._client
        self.reset()
        # retries=0 and no automatic reconnect: the bridge's scheduler owns retry and backoff.
        client = AsyncModbusTcpClient(
            self.host,
            port=self.port,
            timeout=timeout_s,
            retries=0,
            reconnect_delay=0,
            trace_packet=self._trace,
        )
        try:
            ok = await asyncio.wait_for(client.connect(), timeout_s)
        except TimeoutError:
            client.close()
            raise DeviceError("timeout", f"connect to {self.host}:{self.port}") from None
        except OSError as exc:
            client.close()
            raise DeviceError("unreachable", f"{self.host}:{self.port}: {exc}") from exc
        if not ok:
            client.close()
            raise DeviceError("unreachable", f"cannot connect to {self.host}:{self.port}")
        self._client = client
        return client

    def reset(self) -> None:
        """Close the connection; the next request connects again."""
        if self._client is not None:
            self._client.close()
            self._client = None

    async def read(self, unit_id: int, read: Read, timeout_s: float) -> list[int]:
        """The registers of one read (the caller holds :attr:`lock`)."""
        client = await self._ensure(timeout_s)
        fn = (
            client.read_holding_registers
            if read.function == "holding"
            else client.read_input_registers
        )
        where = (
            f"{self.host}:{self.port} unit {unit_id} {read.function} {read.address}+{read.count}"
        )
        received_before = self._received
        try:
            rr = await asyncio.wait_for(
                fn(read.address, count=read.count, device_id=unit_id), timeout_s
            )
        except (TimeoutError, ConnectionException, ModbusIOException) as exc:
            # pymodbus reports a request that got no valid answer as ModbusIOException.
            self.reset()
            junk = self._received - received_before
            if junk:
                raise DeviceError(
                    "garbage", f"{where}: {junk} bytes answered, not a Modbus response"
                ) from exc
            if isinstance(exc, ConnectionException):
                raise DeviceError("unreachable", f"{where}: {exc}") from exc
            raise DeviceError("timeout", f"{where}: no answer within {timeout_s:g} s") from exc
        except ModbusException as exc:
            self.reset()
            raise DeviceError("garbage", f"{where}: {exc}") from exc
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise DeviceError("device_error", f"{where}: Modbus exception code {code}")
        registers = list(getattr(rr, "registers", None) or [])
        if len(registers) != read.count:
            self.reset()
            raise DeviceError("garbage", f"{where}: {len(registers)} registers answered")
        return registers


class ModbusPoller:
    """Polls one Modbus device (a unit id on a connection) by its profile."""

    def __init__(
        self, device: ModbusDevice, profile: ModbusProfile, conn: Connection, timeout_s: float
    ) -> None:
        self.device = device
        self.profile = profile
        self.conn = conn
        self.timeout_s = timeout_s
        self.reads = plan_reads(profile)

    async def poll(self) -> list[RawValue]:
        """Read every planned span, then decode each register from its span."""
        out: list[RawValue] = []
        async with self.conn.lock:
            spans = [
                await self.conn.read(self.device.unit_id, r, self.timeout_s) for r in self.reads
            ]
        for read, words in zip(self.reads, spans, strict=True):
            for reg in read.registers:
                at = reg.address - read.address
                try:
                    raw: object = decode(reg, words[at : at + reg.count])
                except ValueError as exc:
                    raise DeviceError("garbage", f"{reg.quantity.value}: {exc}") from exc
                out.append(RawValue(reg.quantity, raw, reg.unit, reg.scale, reg.limits))
        return out

    async def close(self) -> None:
        """Close the shared connection (closing twice is harmless)."""
        self.conn.reset()


def modbus_pollers(
    devices: list[tuple[ModbusDevice, ModbusProfile, float]],
) -> list[ModbusPoller]:
    """Pollers for (device, profile, timeout) triples, one connection per host:port."""
    conns: dict[tuple[str, int], Connection] = {}
    out = []
    for device, profile, timeout_s in devices:
        key = (device.host, device.port)
        conn = conns.get(key)
        if conn is None:
            conn = conns[key] = Connection(device.host, device.port)
        out.append(ModbusPoller(device, profile, conn, timeout_s))
    return out
