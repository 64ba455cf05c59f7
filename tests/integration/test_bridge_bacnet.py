"""BACnet/IP devices -> greendc bridge -> Mosquitto -> greendc collect -> store, for real.

The devices are bacpypes3 applications on loopback UDP: a chiller plant controller with
its electrical power in kilowatts and its chilled-water supply temperature, a CRAH with its
power in watts and a return-air temperature in degrees Fahrenheit. Each is read with one
ReadPropertyMultiple; units come from the objects' own ``units`` property.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greendc.simulator.devices.bacnet import BacnetTestDevice
from greendc.simulator.devices.snmp import free_udp_port
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


def _bacnet(dev: BacnetTestDevice, name: str, meter: str, points: list[Any]) -> dict[str, Any]:
    return {
        "protocol": "bacnet",
        "name": name,
        "address": dev.address,
        "device_instance": dev.instance,
        "site": "sg1",
        "meter": meter,
        "points": points,
    }


def test_chiller_and_crah_points_reach_the_store_in_their_units(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    chiller = BacnetTestDevice(
        1001,
        {
            "analog-input,1": (182.5, "kilowatts"),
            "analog-input,2": (6.75, "degrees-celsius"),
            "analog-value,3": (1234.5, "kilowatt-hours"),
        },
    ).start()
    crah = BacnetTestDevice(
        2002,
        {"analog-input,10": (5400.0, "watts"), "analog-input,11": (77.0, "degrees-fahrenheit")},
    ).start()
    try:
        devices = [
            _bacnet(
                chiller,
                "chiller-1",
                "chiller",
                [
                    {"object": "analog-input,1", "quantity": "power_w"},
                    {"object": "analog-input,2", "quantity": "temp_c"},
                    {"object": "analog-value,3", "quantity": "energy_wh"},
                ],
            ),
            _bacnet(
                crah,
                "crah-1",
                "ups-2",
                [
                    {"object": "analog-input,10", "quantity": "power_w"},
                    {"object": "analog-input,11", "quantity": "temp_c"},
                ],
            ),
            # A point mapped to the wrong quantity is refused, not converted by guesswork.
            _bacnet(
                crah,
                "crah-1-misread",
                "solar",
                [
                    {"object": "analog-input,10", "quantity": "temp_c"},
                ],
            ),
        ]
        local = f"127.0.0.1/8:{free_udp_port()}"
        settings = bridge_settings(
            mosquitto, mqtt_topic_prefix, tmp_path, devices, bacnet_local_address=local
        )
        with running(settings) as (collector, bridge, _url):
            assert wait_until(lambda: collector.stats.readings_accepted >= 6, 30)
            chiller.set("analog-value,3", 1235.0)
            mark = collector.stats.readings_accepted
            assert wait_until(lambda: collector.stats.readings_accepted >= mark + 6, 30)
            snap = bridge.snapshot()
        rows = stored(tmp_path / "s.sqlite")
    finally:
        chiller.close()
        crah.close()
    assert rows["chiller"][-1] == {"power_w": 182500.0, "temp_c": 6.75, "energy_wh": 1235000.0}
    energy = [r["energy_wh"] for r in rows["chiller"]]
    assert set(energy) == {1234500.0, 1235000.0} and energy == sorted(energy)
    assert {(r["power_w"], r["temp_c"]) for r in rows["ups-2"]} == {(5400.0, 25.0)}
    assert "solar" not in rows
    assert snap.device("crah-1-misread").refused["wrong_unit"] >= 1
    assert dict(collector.stats.rejections) == {}


def test_a_bacnet_device_that_goes_away_goes_stale_and_comes_back(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    dev = BacnetTestDevice(3003, {"analog-input,1": (90.0, "kilowatts")}).start()
    try:
        devices = [
            _bacnet(
                dev, "chiller-2", "chiller", [{"object": "analog-input,1", "quantity": "power_w"}]
            )
        ]
        settings = bridge_settings(
            mosquitto,
            mqtt_topic_prefix,
            tmp_path,
            devices,
            bacnet_local_address=f"127.0.0.1/8:{free_udp_port()}",
        )
        store = tmp_path / "s.sqlite"
        with running(settings) as (collector, bridge, url):
            assert wait_until(lambda: bridge.snapshot().device("chiller-2").up, 20)
            dev.stop()
            gone = wait_until(lambda: failing(url, "chiller-2"), 20)
            assert gone is not None and gone["reason"] == "timeout", gone
            before = settled_count(collector, store, "chiller")
            assert wait_until(
                lambda: bridge.snapshot().device("chiller-2").consecutive_failures >= 3
            )
            assert settled_count(collector, store, "chiller") == before
            dev.points["analog-input,1"] = (95.0, "kilowatts")
            dev.start()
            assert wait_until(lambda: bridge.snapshot().device("chiller-2").up, 30)
            assert wait_until(lambda: settled_count(collector, store, "chiller") > before, 20)
        rows = stored(store)
    finally:
        dev.close()
    assert {r["power_w"] for r in rows["chiller"]} == {90000.0, 95000.0}
