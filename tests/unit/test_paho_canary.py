"""Canary for paho-mqtt upgrades: collector/mqttio.py was written against this paho code.

The buffered reader replaces ``Client._packet_read`` and mirrors what paho does for a
PUBLISH (``_handle_publish``), feeds ``_packet_handle`` through ``_in_packet``, queues
PUBACKs with ``_packet_queue`` and keeps paho's keepalive clock (``_check_keepalive``) fed.
The probe (``paho_problems``) catches a missing name or a changed signature at start-up;
this test catches the quieter change: the same names doing something else. When it fails,
read the new paho code of the method named against collector/mqttio.py, adapt the reader,
then record the new hashes (and the pin in pyproject.toml and ``PAHO_VERSION``).
"""

from __future__ import annotations

import hashlib
import inspect
import re
import textwrap
import tomllib
from pathlib import Path

import paho.mqtt
import paho.mqtt.client as mqtt
import pytest

from greendc.collector.mqttio import (
    PAHO_METHODS,
    PAHO_VERSION,
    BufferedClient,
    GuardedClient,
    paho_problems,
)

ROOT = Path(__file__).resolve().parents[2]

# sha256 (first 16 hex digits) of each method's dedented source in paho-mqtt 2.2.0.
REVIEWED = {
    "_packet_read": "b4c42393b324815b",  # replaced by BufferedClient._packet_read
    "loop_read": "46ec901d4d825b8e",  # the caller of _packet_read
    "_handle_publish": "7c18751dad1fddfc",  # mirrored for PUBLISH QoS 0/1
    "_packet_handle": "257b210274dfc6f5",  # fed from _in_packet for every other packet
    "_packet_queue": "2c27ac7e534e87cd",  # ack_many queues PUBACKs through it
    "_sock_recv": "01743c89dc47bcdf",
    "_easy_log": "c1716d65144b36d7",
    "_check_keepalive": "6ca159aa763158cd",  # reads _last_bytes_received, which we write
    "ack": "317d82722f75977a",  # the agent's acknowledgement of QoS 2 and fallback path
    "_thread_main": "938f60e16e227bc4",  # GuardedClient restarts it
    "_loop_rc_handle": "9b4082fa6089ea3e",  # GuardedClient drops the connection through it
    "_reconnect_wait": "d0e67f876844618a",  # the backoff before a restarted loop
}


def _digest(name: str) -> str:
    source = textwrap.dedent(inspect.getsource(getattr(mqtt.Client, name)))
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(REVIEWED))
def test_paho_code_the_reader_relies_on_is_the_code_it_was_reviewed_against(name: str) -> None:
    assert _digest(name) == REVIEWED[name], (
        f"paho-mqtt {paho.mqtt.__version__} changed Client.{name}: review collector/mqttio.py "
        "against it before recording the new hash"
    )


def test_every_probed_method_is_watched_by_the_canary() -> None:
    assert set(PAHO_METHODS) <= set(REVIEWED)


def test_installed_paho_pin_and_reader_name_one_minor_version() -> None:
    assert paho.mqtt.__version__.startswith(PAHO_VERSION + ".")
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.startswith("paho-mqtt")]
    major, minor = (int(x) for x in PAHO_VERSION.split("."))
    assert pin == f"paho-mqtt>={major}.{minor},<{major}.{minor + 1}", pin


def test_the_probe_passes_on_the_installed_paho() -> None:
    assert paho_problems() == []


def test_the_probe_names_a_missing_method_a_changed_signature_and_a_missing_attribute() -> None:
    """Clients shaped like a changed paho: the probe must say what is off, by name."""

    class Renamed(mqtt.Client):
        _packet_queue = None  # type: ignore[assignment]

        def _sock_recv(self, size: int) -> bytes:  # type: ignore[override]
            return b""

        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            del self._last_bytes_received
            self._in_packet["extra"] = 0

    problems = paho_problems(Renamed)
    text = "\n".join(problems)
    assert "Client._packet_queue is missing" in text
    assert "Client._sock_recv('self', 'size')" in text
    assert "Client()._last_bytes_received is missing" in text
    assert "_in_packet has keys" in text
    assert len(problems) == 4, problems


def test_the_reader_overrides_exactly_the_method_paho_calls() -> None:
    # loop_read calls self._packet_read(); the buffered client's must take its place.
    assert "self._packet_read()" in inspect.getsource(mqtt.Client.loop_read)
    assert BufferedClient._packet_read is not mqtt.Client._packet_read
    # GuardedClient (BufferedClient's base, and the paho-reader client) wraps it.
    assert re.search(r"def _packet_read\(self\)", inspect.getsource(GuardedClient))
