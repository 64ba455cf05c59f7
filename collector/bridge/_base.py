"""What every protocol poller shares: the device error and the poller interface."""

from __future__ import annotations

from typing import Protocol

from greendc.collector.bridge.values import RawValue

# Why a poll failed; label values of greendc_bridge_poll_errors_total and the reason the
# bridge's /metrics gives for a failing device.
FAILURE_REASONS: dict[str, str] = {
    "timeout": "the device did not answer a request within timeout_seconds",
    "unreachable": "no connection could be made (refused, no route, name not resolved)",
    "device_error": "the device answered with an error (a Modbus exception, an SNMP error)",
    "garbage": "the answer could not be decoded (wrong length, wrong type, not the protocol)",
    "auth": "the device refused the credentials",
    "tls": "the TLS handshake failed (an untrusted or mismatched certificate)",
    "internal": "a bug in the bridge: the traceback is in its log",
}


class DeviceError(Exception):
    """A poll that failed as a whole; ``reason`` is one of :data:`FAILURE_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class Poller(Protocol):
    """Reads one device. ``poll`` times out each request itself and raises DeviceError."""

    async def poll(self) -> list[RawValue]:
        """The device's values as it gave them (validation happens in the scheduler)."""
        ...

    async def close(self) -> None:
        """Release connections (called once when the bridge stops)."""
        ...
