"""SNMP agents -> greendc bridge -> Mosquitto -> greendc collect -> store, for real.

The agent is pysnmp's command responder on loopback UDP (tests/snmp_agent.py), answering
v2c and v3 authPriv. Its recordings are written from the MIB texts: RFC 1628 UPS-MIB
(upsOutputPower per output line, upsBatteryTemperature) and APC PowerNet-MIB
(rPDU2DeviceStatusPower in hundredths of kW, rPDU2DeviceStatusEnergy and
rPDU2OutletMeteredStatusEnergy in tenths of kWh, rPDU2OutletMeteredStatusPower in W).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from greendc.simulator.devices.snmp import SnmpAgent
from tests.integration.bridge_support import (
    bridge_settings,
    failing,
    running,
    settled_count,
    stored,
)
from tests.support.collector import scrape
from tests.support.polling import wait_until
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.integration

UPS_POWER = "1.3.6.1.2.1.33.1.4.4.1.4"  # upsOutputPower.<line>, W
UPS_LOAD = "1.3.6.1.2.1.33.1.4.4.1.5"  # upsOutputPercentLoad.<line> (status: the max)
UPS_BATTERY_TEMP = "1.3.6.1.2.1.33.1.2.7.0"  # upsBatteryTemperature, C
UPS_BATTERY_STATUS = "1.3.6.1.2.1.33.1.2.1.0"  # upsBatteryStatus (status)
UPS_SECONDS_ON_BATTERY = "1.3.6.1.2.1.33.1.2.2.0"  # upsSecondsOnBattery (status)
PDU_POWER = "1.3.6.1.4.1.318.1.1.26.4.3.1.5"  # rPDU2DeviceStatusPower.<pdu>, 0.01 kW
PDU_ENERGY = "1.3.6.1.4.1.318.1.1.26.4.3.1.9"  # rPDU2DeviceStatusEnergy.<pdu>, 0.1 kWh
OUTLET_POWER = "1.3.6.1.4.1.318.1.1.26.9.4.3.1.7"  # rPDU2OutletMeteredStatusPower, W
OUTLET_ENERGY = "1.3.6.1.4.1.318.1.1.26.9.4.3.1.11"  # ...MeteredStatusEnergy, 0.1 kWh
INTEGER, GAUGE, COUNTER64 = 2, 66, 70

AUTH_KEY = "auth-key-123"
PRIV_KEY = "priv-key-456"


def _recording(agent: SnmpAgent, pdu_energy: int) -> None:
    agent.set(
        {
            f"{UPS_POWER}.1": (INTEGER, 1500),
            f"{UPS_POWER}.2": (INTEGER, 1600),
            f"{UPS_POWER}.3": (INTEGER, 1700),
            f"{UPS_LOAD}.1": (INTEGER, 40),
            f"{UPS_LOAD}.2": (INTEGER, 55),
            f"{UPS_LOAD}.3": (INTEGER, 38),
            UPS_BATTERY_STATUS: (INTEGER, 2),
            UPS_SECONDS_ON_BATTERY: (INTEGER, 0),
            UPS_BATTERY_TEMP: (INTEGER, 31),
            f"{PDU_POWER}.1": (INTEGER, 613),  # 6.13 kW
            f"{PDU_ENERGY}.1": (INTEGER, pdu_energy),
            f"{PDU_POWER}.2": (INTEGER, -1),  # a model without the feature answers -1
            f"{PDU_ENERGY}.2": (INTEGER, 5),
            f"{OUTLET_POWER}.7": (GAUGE, 180),
            f"{OUTLET_ENERGY}.7": (COUNTER64, 42),
        }
    )


def _snmp(agent: SnmpAgent, name: str, meter: str, **kw: Any) -> dict[str, Any]:
    return {
        "protocol": "snmp",
        "name": name,
        "host": agent.host,
        "port": agent.port,
        "site": "sg1",
        "meter": meter,
        **kw,
    }


def test_v2c_and_v3_agents_reach_the_store_exactly(
    mosquitto: Mosquitto,
    mqtt_topic_prefix: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    key_file = tmp_path / "priv.key"
    key_file.write_text(PRIV_KEY + "\n")
    with SnmpAgent(community="s3cret-community", auth_key=AUTH_KEY, priv_key=PRIV_KEY) as agent:
        _recording(agent, pdu_energy=123456)
        v3 = {
            "version": "3",
            "user": agent.user,
            "auth_key_env": "UPS_AUTH",
            "priv_key_file": str(key_file),
        }
        devices = [
            _snmp(
                agent,
                "ups-a",
                "ups-1",
                profile="ups-mib",
                community_env="UPS_COMMUNITY",
                max_repetitions=2,
            ),
            _snmp(agent, "pdu-a", "ups-2", profile="apc-rpdu2", **v3),
            _snmp(agent, "outlet-7", "chiller", profile="apc-rpdu2-outlet", index=7, **v3),
            _snmp(agent, "pdu-b", "solar", profile="apc-rpdu2", index=2, **v3),
        ]
        env = {"UPS_COMMUNITY": "s3cret-community", "UPS_AUTH": AUTH_KEY}
        settings = bridge_settings(mosquitto, mqtt_topic_prefix, tmp_path, devices, env=env)
        assert "s3cret" not in repr(settings) and PRIV_KEY not in str(settings.redacted())
        caplog.set_level(logging.DEBUG)
        with running(settings) as (collector, bridge, url):
            assert wait_until(lambda: collector.stats.readings_accepted >= 12, 30)
            status = {
                s.labels["name"]: s.value
                for s in scrape(url)["greendc_bridge_device_status"]
                if s.labels["device"] == "ups-a"
            }
            _recording(agent, pdu_energy=123457)  # the counter moves on
            mark = collector.stats.readings_accepted
            assert wait_until(lambda: collector.stats.readings_accepted >= mark + 12, 30)
            snap = bridge.snapshot()
        rows = stored(tmp_path / "s.sqlite")
    assert all(d.up and not d.errors for d in snap.devices), snap
    assert rows["ups-1"][-1] == {"power_w": 4800.0, "temp_c": 31.0}  # three lines summed
    assert status == {
        "ups_output_load_percent": 55.0,  # the busiest of the three lines
        "ups_battery_status": 2.0,  # batteryNormal
        "ups_seconds_on_battery": 0.0,
    }
    assert {r["power_w"] for r in rows["ups-2"]} == {6130.0}
    energy = [r["energy_wh"] for r in rows["ups-2"]]
    assert set(energy) == {12345600.0, 12345700.0} and energy == sorted(energy)
    assert rows["chiller"][-1] == {"power_w": 180.0, "energy_wh": 4200.0}
    # PDU 2 answers -1 for power (unsupported): refused as out of range, energy still kept.
    assert all(set(r) == {"energy_wh"} for r in rows["solar"]) and rows["solar"]
    assert snap.device("pdu-b").refused["out_of_range"] >= 1
    assert dict(collector.stats.rejections) == {}
    secrets = ("s3cret-community", AUTH_KEY, PRIV_KEY)
    assert not [r for r in caplog.records if any(s in r.getMessage() for s in secrets)]


def test_an_agent_that_goes_away_or_refuses_the_keys_goes_stale_and_says_why(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    with SnmpAgent(auth_key=AUTH_KEY, priv_key=PRIV_KEY) as agent:
        _recording(agent, pdu_energy=100)
        devices = [
            _snmp(agent, "ups-a", "ups-1", profile="ups-mib", community="public"),
            _snmp(
                agent,
                "pdu-wrong-key",
                "ups-2",
                profile="apc-rpdu2",
                version="3",
                user=agent.user,
                auth_key="not-the-key",
                priv_key=PRIV_KEY,
            ),
        ]
        settings = bridge_settings(mosquitto, mqtt_topic_prefix, tmp_path, devices)
        store = tmp_path / "s.sqlite"
        with running(settings) as (collector, bridge, url):
            assert wait_until(lambda: bridge.snapshot().device("ups-a").up, 20)
            refused = wait_until(lambda: failing(url, "pdu-wrong-key"), 20)
            assert refused is not None and refused["reason"] == "auth", refused
            assert "not-the-key" not in refused["detail"]

            agent.stop()
            gone = wait_until(lambda: failing(url, "ups-a"), 20)
            assert gone is not None and gone["reason"] == "timeout", gone
            before = settled_count(collector, store, "ups-1")
            assert wait_until(lambda: bridge.snapshot().device("ups-a").consecutive_failures >= 3)
            assert settled_count(collector, store, "ups-1") == before  # nothing invented

            agent.set({f"{UPS_POWER}.3": (INTEGER, 2700)})
            agent.start()
            assert wait_until(lambda: bridge.snapshot().device("ups-a").up, 20)
            assert wait_until(lambda: settled_count(collector, store, "ups-1") > before, 20)
        rows = stored(store)
    assert "ups-2" not in rows  # the refused device never produced a reading
    assert {r["power_w"] for r in rows["ups-1"]} == {4800.0, 5800.0}
