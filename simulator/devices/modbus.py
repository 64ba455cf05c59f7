"""Simulated Modbus TCP devices: pymodbus's own server (for the simulator, tests, bench).

:class:`ModbusDevices` runs one pymodbus ``ModbusTcpServer`` (one gateway, several unit ids)
in its own thread and event loop. Each unit is laid out like a profile: a register block per
function spanning the profile's registers, holding the words :meth:`set` encodes. It can be
made slow (every answer delayed), stopped (the device goes away) and started again on the
same port (it comes back).
"""

from __future__ import annotations

import asyncio
import functools
import socket
import threading
import time
from collections.abc import Mapping

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from greendc.config import ModbusProfile, ModbusRegister
from greendc.registers import encode

LOOPBACK = "127.0.0.1"


def free_tcp_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


_FUNCTION_CODE = {"holding": 3, "input": 4}


class ModbusDevices:
    """A Modbus TCP gateway (a free loopback port unless given) with a unit per profile."""

    def __init__(
        self, units: Mapping[int, ModbusProfile], port: int | None = None, host: str = LOOPBACK
    ) -> None:
        self.units = dict(units)
        self.host = host
        self.port = port or free_tcp_port(host)
        self.delay_s = 0.0  # every answer waits this long (a device that times out)
        self.requests = 0
        self._words: dict[tuple[int, int, int], int] = {}  # (unit, fc, address) -> word
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="modbus-devices")
        self._thread.daemon = True
        self._thread.start()
        self._server: ModbusTcpServer | None = None

    # -- values -------------------------------------------------------------------------
    def set(self, unit: int, register: ModbusRegister, value: int | float) -> None:
        """Hold ``value`` (in the register's device encoding) at the register's address."""
        self.set_words(unit, register.function, register.address, encode(register, value))

    def set_words(self, unit: int, function: str, address: int, words: list[int]) -> None:
        """Hold raw 16-bit words from ``address`` on (``unit``, holding|input)."""
        fc = _FUNCTION_CODE[function]
        with self._lock:
            for i, w in enumerate(words):
                self._words[(unit, fc, address + i)] = w

    async def _action(
        self,
        unit: int,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: object,
    ) -> None:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        with self._lock:
            for i in range(len(current_registers)):
                current_registers[i] = self._words.get((unit, function_code, start_address + i), 0)

    # -- lifecycle ----------------------------------------------------------------------
    def _device(self, unit: int, profile: ModbusProfile) -> SimDevice:
        blocks: dict[str, list[SimData]] = {"holding": [], "input": []}
        for function in blocks:
            regs = [r for r in profile.registers if r.function == function]
            if regs:
                lo = min(r.address for r in regs)
                hi = max(r.address + r.count for r in regs)
                blocks[function].append(SimData(lo, count=hi - lo, datatype=DataType.REGISTERS))
            else:
                blocks[function].append(SimData(0, count=1, datatype=DataType.REGISTERS))
        bits = [SimData(0, values=False, datatype=DataType.BITS)]
        return SimDevice(
            id=unit,
            simdata=(bits, list(bits), blocks["holding"], blocks["input"]),
            action=functools.partial(self._action, unit),
        )

    def start(self) -> ModbusDevices:
        """Listen (again) on the same port; return once it accepts connections."""
        devices = [self._device(u, p) for u, p in self.units.items()]

        async def serve() -> ModbusTcpServer:
            # pymodbus binds its transport to the running loop: build the server inside it.
            server = ModbusTcpServer(devices, address=(self.host, self.port))
            await server.serve_forever(background=True)
            return server

        self._server = asyncio.run_coroutine_threadsafe(serve(), self._loop).result(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((self.host, self.port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop listening and drop every connection (the device goes away)."""
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
            self._server = None

    def close(self) -> None:
        """Stop the server and its event loop thread."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ModbusDevices:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()


class GarbageServer:
    """A TCP server on loopback that answers every request with bytes that are not Modbus."""

    def __init__(self) -> None:
        self.host = LOOPBACK
        self._sock = socket.create_server((self.host, 0))
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="garbage-server", daemon=True)

    def _serve(self) -> None:
        self._sock.settimeout(0.1)
        conns: list[socket.socket] = []
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
                conn.settimeout(0.1)
                conns.append(conn)
            except TimeoutError:
                pass
            for c in list(conns):
                try:
                    if c.recv(260):
                        c.sendall(b"\x00\x01HTTP/1.1 400 Bad Request\r\n\r\n\xff\xfe")
                    else:
                        conns.remove(c)
                        c.close()
                except TimeoutError:
                    continue
                except OSError:
                    conns.remove(c)
        for c in conns:
            c.close()

    def __enter__(self) -> GarbageServer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
