"""A simulated SNMP agent: pysnmp's command responder on UDP (simulator, tests, bench).

:class:`SnmpAgent` answers GET, GETNEXT and GETBULK for SNMP v2c (one community) and v3
(one USM user, authPriv: HMAC-SHA and AES-128) over a value table set by its owner, laid
out like the MIB a profile reads (tests/integration/test_bridge_snmp.py writes its
recordings from the MIB texts; the simulator from the SNMP profiles). The agent runs in its
own thread and event loop; it can be stopped (the device goes away) and started again on
the same port.
"""

from __future__ import annotations

import asyncio
import bisect
import socket
import threading
from collections.abc import Mapping
from typing import Any

from pysnmp.carrier.asyncio.dgram import udp
from pysnmp.entity import config, engine
from pysnmp.entity.rfc3413 import cmdrsp, context
from pysnmp.proto import rfc1902, rfc1905

LOOPBACK = "127.0.0.1"

Oid = tuple[int, ...]
# snmprec-style type tags: 2 Integer32, 4 OCTET STRING, 65 Counter32, 66 Gauge32, 70 Counter64
_TYPES: dict[int, Any] = {
    2: rfc1902.Integer32,
    4: rfc1902.OctetString,
    65: rfc1902.Counter32,
    66: rfc1902.Gauge32,
    70: rfc1902.Counter64,
}


def free_udp_port(host: str = LOOPBACK) -> int:
    """A UDP port on ``host`` that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def oid(text: str) -> Oid:
    """'1.3.6.1...' as a tuple of ints."""
    return tuple(int(p) for p in text.strip(".").split("."))


class _Table:
    """The agent's values as a read-only MIB instrumentation (what pysnmp's responders call)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[Oid, Any] = {}
        self.keys: list[Oid] = []

    def set(self, values: Mapping[str, tuple[int, object]]) -> None:
        with self.lock:
            for name, (tag, value) in values.items():
                self.values[oid(name)] = _TYPES[tag](value)
            self.keys = sorted(self.values)

    def read_variables(self, *var_binds: Any, **_context: Any) -> list[Any]:
        with self.lock:
            return [
                (name, self.values.get(tuple(name), rfc1905.noSuchInstance))
                for name, _ in var_binds
            ]

    def read_next_variables(self, *var_binds: Any, **_context: Any) -> list[Any]:
        out = []
        with self.lock:
            for name, _ in var_binds:
                i = bisect.bisect_right(self.keys, tuple(name))
                if i < len(self.keys):
                    key = self.keys[i]
                    out.append((rfc1902.ObjectName(key), self.values[key]))
                else:
                    out.append((name, rfc1905.endOfMibView))
        return out


class SnmpAgent:
    """An SNMP v2c + v3 (authPriv) agent on a free loopback UDP port."""

    def __init__(
        self,
        *,
        community: str = "public",
        user: str = "greendc",
        auth_key: str = "auth-key-123",
        priv_key: str = "priv-key-456",
        host: str = LOOPBACK,
        port: int = 0,
    ) -> None:
        self.community = community
        self.user = user
        self.auth_key = auth_key
        self.priv_key = priv_key
        self.host = host
        self.port = port
        self.table = _Table()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="snmp-agent")
        self._thread.daemon = True
        self._thread.start()
        self._engine: engine.SnmpEngine | None = None

    def set(self, values: Mapping[str, tuple[int, object]]) -> None:
        """Set OIDs to (type tag, value), e.g. ``{"1.3.6.1.2.1.33.1.2.7.0": (2, 31)}``."""
        self.table.set(values)

    def _build(self) -> engine.SnmpEngine:
        eng = engine.SnmpEngine()
        if self.port == 0:
            self.port = free_udp_port()
        transport = udp.UdpTransport().open_server_mode((self.host, self.port))
        config.add_transport(eng, udp.DOMAIN_NAME, transport)
        config.add_v1_system(eng, "greendc-area", self.community)
        config.add_vacm_user(eng, 2, "greendc-area", "noAuthNoPriv", (1, 3, 6))
        config.add_v3_user(
            eng,
            self.user,
            config.USM_AUTH_HMAC96_SHA,
            self.auth_key,
            config.USM_PRIV_CFB128_AES,
            self.priv_key,
        )
        config.add_vacm_user(eng, 3, self.user, "authPriv", (1, 3, 6))
        ctx = context.SnmpContext(eng)
        ctx.context_names[b""] = self.table  # the default context reads the test's values
        cmdrsp.GetCommandResponder(eng, ctx)
        cmdrsp.NextCommandResponder(eng, ctx)
        cmdrsp.BulkCommandResponder(eng, ctx)
        return eng

    def start(self) -> SnmpAgent:
        """Listen (again, on the same port) and answer."""

        async def build() -> engine.SnmpEngine:
            return self._build()

        self._engine = asyncio.run_coroutine_threadsafe(build(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Stop answering and close the socket (the device goes away)."""
        eng = self._engine
        if eng is None:
            return

        async def close() -> None:
            eng.close_dispatcher()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._engine = None

    def close(self) -> None:
        """Stop the agent and its event loop thread."""
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> SnmpAgent:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()
