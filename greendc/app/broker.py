"""An MQTT broker for the demo, so ``greendc demo`` needs no server installed.

A local Mosquitto binary is preferred when one is installed (it is the real thing: MQTT 5,
persistent sessions); otherwise amqtt, a pure-Python MQTT 3.1.1 broker, runs in-process
on its own event loop thread. Either way it listens on a free loopback port only.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from greendc._errors import GreendcError

log = logging.getLogger(__name__)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# MQTT 3.1.1 CONNECT (both brokers speak it): protocol "MQTT" level 4, clean session,
# keepalive 10 s, client id "greendc-probe"; then the DISCONNECT that ends it politely.
_PROBE_CLIENT_ID = b"greendc-probe"
_PROBE_VARIABLE = b"\x00\x04MQTT\x04\x02\x00\x0a"
_PROBE_PAYLOAD = len(_PROBE_CLIENT_ID).to_bytes(2, "big") + _PROBE_CLIENT_ID
_PROBE_CONNECT = (
    bytes([0x10, len(_PROBE_VARIABLE) + len(_PROBE_PAYLOAD)]) + _PROBE_VARIABLE + _PROBE_PAYLOAD
)
_DISCONNECT = b"\xe0\x00"
_CONNACK_ACCEPTED = b"\x20\x02\x00\x00"  # session present 0, return code 0


def _mqtt_ready(port: int) -> bool:
    """Whether an MQTT client can connect to the broker on ``port`` now.

    A real CONNECT answered by CONNACK, then DISCONNECT: a bare TCP connect that closes
    without a packet makes amqtt log an ERROR and a WARNING for a client it never saw.
    """
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(_PROBE_CONNECT)
            answer = b""
            while len(answer) < len(_CONNACK_ACCEPTED):
                chunk = sock.recv(len(_CONNACK_ACCEPTED) - len(answer))
                if not chunk:
                    return False
                answer += chunk
            sock.sendall(_DISCONNECT)
            return answer == _CONNACK_ACCEPTED
    except OSError:
        return False


def _wait_ready(port: int, deadline_s: float) -> None:
    while time.monotonic() < deadline_s:
        if _mqtt_ready(port):
            return
        time.sleep(0.05)  # polling readiness against a deadline
    raise GreendcError(
        f"the embedded MQTT broker did not accept an MQTT connection on port {port} in time"
    )


class EmbeddedBroker:
    """Start with :meth:`start`, stop with :meth:`stop`; ``url`` and ``protocol`` describe it."""

    def __init__(self, prefer_mosquitto: bool = True) -> None:
        self.port = free_port()
        self.kind = ""
        self.protocol = "3.1.1"
        self._prefer_mosquitto = prefer_mosquitto
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts an MQTT connection."""
        mosquitto = shutil.which("mosquitto") or (
            "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
        )
        if self._prefer_mosquitto and mosquitto:
            self._start_mosquitto(mosquitto)
        else:
            self._start_amqtt()
        _wait_ready(self.port, time.monotonic() + timeout_s)
        log.info("embedded MQTT broker (%s, MQTT %s) on %s", self.kind, self.protocol, self.url)
        return self

    def _start_mosquitto(self, binary: str) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="greendc-broker-")
        conf = Path(self._tmp.name) / "mosquitto.conf"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence false",
            "max_queued_messages 0",  # the default 1000 silently drops QoS 1 to slow readers
        ]
        import os

        if os.geteuid() == 0:
            lines.append("user root")
        conf.write_text("\n".join(lines) + "\n")
        self._proc = subprocess.Popen(
            [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.kind = "mosquitto"
        self.protocol = "5"

    def _start_amqtt(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        started = threading.Event()
        errors: list[BaseException] = []
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
            },
        }

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                self._broker = Broker(config, loop=loop)
                loop.run_until_complete(self._broker.start())
            except BaseException as exc:  # surfaced to start() below
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        self._loop = loop
        self._thread = threading.Thread(target=run, name="greendc-amqtt", daemon=True)
        self._thread.start()
        started.wait(10)
        if errors:
            raise GreendcError(f"could not start the embedded amqtt broker: {errors[0]}")
        self.kind = "amqtt"
        self.protocol = "3.1.1"

    def stop(self) -> None:
        """Stop the broker."""
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._loop is not None and self._broker is not None:
            fut = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), self._loop)
            try:
                fut.result(5)
            except Exception as exc:  # shutting down anyway; say why it was untidy
                log.debug("amqtt shutdown: %s", exc)
            self._loop.call_soon_threadsafe(self._loop.stop)
            if self._thread is not None:
                self._thread.join(5)
            self._loop = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
