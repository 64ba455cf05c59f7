"""Redfish services -> greendc bridge -> Mosquitto -> greendc collect -> store, for real.

Each service is a real HTTPS server on loopback (tests/redfish_server.py) serving a mockup
written from the DMTF schemas (tests/data/redfish/): a chassis with EnvironmentMetrics
(PowerWatts, EnergykWh), one with a PowerSubsystem of two power supplies, and an older one
with only the Power resource. Its certificate comes from a test CA the bridge is told to
trust: certificate checking stays on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from greendc.simulator.devices.redfish import RedfishServer, make_ca
from tests.integration.bridge_support import (
    bridge_settings,
    failing,
    running,
    settled_count,
    stored,
)
from tests.support.polling import wait_until
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.integration

MOCKUPS = Path(__file__).resolve().parents[1] / "data" / "redfish"


def _mockup(name: str) -> dict[str, Any]:
    """A mockup file: every URI of the service mapped to its resource."""
    doc: dict[str, Any] = json.loads((MOCKUPS / f"{name}.json").read_text())
    return doc


USER = "greendc"
PASSWORD = "bmc-pass-9f3"
ENV_METRICS = "/redfish/v1/Chassis/1U/EnvironmentMetrics"


def _redfish(server: RedfishServer, name: str, meter: str, **kw: Any) -> dict[str, Any]:
    return {
        "protocol": "redfish",
        "name": name,
        "url": server.url,
        "username": USER,
        "password_env": "BMC_PASSWORD",
        "site": "sg1",
        "meter": meter,
        **kw,
    }


def test_three_chassis_schemas_reach_the_store_exactly(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    ca, cert, key = make_ca(tmp_path / "tls")
    servers = [
        RedfishServer(_mockup(m), cert, key, username=USER, password=PASSWORD).start()
        for m in ("environment-metrics", "power-subsystem", "legacy-power")
    ]
    env_srv, sub_srv, legacy_srv = servers
    try:
        devices = [
            _redfish(env_srv, "bmc-env", "ups-1", ca_file=str(ca)),
            _redfish(sub_srv, "bmc-psu", "ups-2", ca_file=str(ca), auth="basic"),
            _redfish(legacy_srv, "bmc-old", "chiller", ca_file=str(ca)),
        ]
        settings = bridge_settings(
            mosquitto, mqtt_topic_prefix, tmp_path, devices, env={"BMC_PASSWORD": PASSWORD}
        )
        with running(settings) as (collector, bridge, _url):
            assert wait_until(lambda: collector.stats.readings_accepted >= 9, 30)
            env_srv.set_reading(ENV_METRICS, "EnergykWh.Reading", 36166.5)
            env_srv.expire_sessions()  # the bridge must log in again, not give up
            mark = collector.stats.readings_accepted
            assert wait_until(lambda: collector.stats.readings_accepted >= mark + 9, 30)
            snap = bridge.snapshot()
        rows = stored(tmp_path / "s.sqlite")
    finally:
        for s in servers:
            s.stop()
    assert all(d.up and not d.errors and not d.refused for d in snap.devices), snap
    assert {r["power_w"] for r in rows["ups-1"]} == {374.5}
    energy = [r["energy_wh"] for r in rows["ups-1"]]
    assert set(energy) == {36166250.0, 36166500.0} and energy == sorted(energy)
    assert rows["ups-2"][-1] == {"power_w": 370.75, "energy_wh": 1999750.0}  # two supplies
    assert {tuple(sorted(r.items())) for r in rows["chiller"]} == {(("power_w", 412.0),)}
    assert env_srv.logins >= 2 and sub_srv.logins == 0  # basic auth never opens a session
    assert ("GET", "/redfish/v1/Chassis/Enclosure") in env_srv.requests  # discovered, skipped
    assert dict(collector.stats.rejections) == {}


def test_untrusted_certificates_wrong_passwords_and_outages_say_why(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    ca, cert, key = make_ca(tmp_path / "tls")
    srv = RedfishServer(_mockup("environment-metrics"), cert, key, username=USER, password=PASSWORD)
    srv.start()
    try:
        devices = [
            _redfish(srv, "trusted", "ups-1", ca_file=str(ca)),
            _redfish(srv, "untrusted", "ups-2"),  # the test CA is not in the system store
            _redfish(srv, "wrong-password", "chiller", ca_file=str(ca), password_env="WRONG"),
        ]
        env = {"BMC_PASSWORD": PASSWORD, "WRONG": "not-the-password"}
        settings = bridge_settings(mosquitto, mqtt_topic_prefix, tmp_path, devices, env=env)
        store = tmp_path / "s.sqlite"
        with running(settings) as (collector, bridge, url):
            assert wait_until(lambda: bridge.snapshot().device("trusted").up, 20)
            tls = wait_until(lambda: failing(url, "untrusted"), 20)
            assert tls is not None and tls["reason"] == "tls", tls
            auth = wait_until(lambda: failing(url, "wrong-password"), 20)
            assert auth is not None and auth["reason"] == "auth", auth
            assert "not-the-password" not in str(auth)

            srv.unavailable = True  # a BMC rebooting answers 503
            busy = wait_until(lambda: failing(url, "trusted"), 20)
            assert busy is not None and busy["reason"] == "device_error", busy
            assert "HTTP 503" in busy["detail"]
            srv.unavailable = False
            assert wait_until(lambda: bridge.snapshot().device("trusted").up, 20)

            srv.stop()
            gone = wait_until(lambda: failing(url, "trusted"), 20)
            assert gone is not None and gone["reason"] in ("unreachable", "timeout"), gone
            before = settled_count(collector, store, "ups-1")
            assert wait_until(lambda: bridge.snapshot().device("trusted").consecutive_failures >= 3)
            assert settled_count(collector, store, "ups-1") == before
            srv.set_reading(ENV_METRICS, "PowerWatts.Reading", 401.0)
            srv.start()
            assert wait_until(lambda: bridge.snapshot().device("trusted").up, 20)
            assert wait_until(lambda: settled_count(collector, store, "ups-1") > before, 20)
        rows = stored(store)
    finally:
        srv.stop()
    assert set(rows) == {"ups-1"}
    assert {r["power_w"] for r in rows["ups-1"]} == {374.5, 401.0}
