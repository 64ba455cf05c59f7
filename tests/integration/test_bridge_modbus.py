"""Modbus devices -> greendc bridge -> Mosquitto -> greendc collect -> store, for real.

The devices are pymodbus's own TCP server on loopback, one gateway with a unit per shipped
profile (and one written in config), laid out like each published register map. Stored
values must equal the devices' values exactly, in canonical units. The fault tests make a
device slow, make one answer garbage, and take one away and bring it back: its meter gets
nothing published (stale, never zero) and the bridge's /metrics says which device and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from greendc.config import shipped_modbus_profiles
from greendc.simulator.devices.modbus import GarbageServer, ModbusDevices
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

PROFILES = shipped_modbus_profiles()
SDM = PROFILES["eastron-sdm630"]
IEM = PROFILES["schneider-iem3000"]
# A generic profile in config, laid out like a Carlo Gavazzi EM24 (int32, low word first,
# W x 10 and kWh x 10): no shipped profile needed for a meter the project has never seen.
GENERIC = {
    "name": "em24-like",
    "max_gap_registers": 10,
    "registers": [
        {
            "quantity": "power_w",
            "function": "input",
            "address": 40,
            "type": "int32",
            "word_order": "little",
            "scale": 0.1,
            "unit": "W",
        },
        {
            "quantity": "energy_wh",
            "function": "input",
            "address": 52,
            "type": "int32",
            "word_order": "little",
            "scale": 0.1,
            "unit": "kWh",
        },
    ],
}


def _device(gw: ModbusDevices, unit: int, profile: str, meter: str) -> dict[str, Any]:
    return {
        "protocol": "modbus",
        "name": f"gw{gw.port}-u{unit}",
        "host": gw.host,
        "port": gw.port,
        "unit_id": unit,
        "profile": profile,
        "site": "sg1",
        "meter": meter,
    }


def test_every_shipped_profile_reaches_the_store_exactly(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    gateway = ModbusDevices({1: SDM, 2: IEM, 3: shipped_or_generic()}).start()
    direct = ModbusDevices({7: IEM}).start()
    try:
        gateway.set(1, SDM.registers[0], 12345.5)  # W, float32
        gateway.set(1, SDM.registers[1], 98765.25)  # kWh, float32
        gateway.set(2, IEM.registers[0], 250.125)  # kW, float32
        gateway.set(2, IEM.registers[1], 123456789012)  # Wh, int64
        generic = shipped_or_generic()
        gateway.set(3, generic.registers[0], 123457)  # 12345.7 W
        gateway.set(3, generic.registers[1], 4567891)  # 456789.1 kWh
        direct.set(7, IEM.registers[0], -3.5)  # kW: a meter may read export as negative
        direct.set(7, IEM.registers[1], 42)
        expected = {
            "incomer": {"power_w": 12345.5, "energy_wh": 98765250.0},
            "ups-1": {"power_w": 250125.0, "energy_wh": 123456789012.0},
            "ups-2": {"power_w": 12345.7, "energy_wh": 456789100.0},
            "chiller": {"power_w": -3500.0, "energy_wh": 42.0},
        }
        devices = [
            _device(gateway, 1, "eastron-sdm630", "incomer"),
            _device(gateway, 2, "schneider-iem3000", "ups-1"),
            _device(gateway, 3, "em24-like", "ups-2"),
            _device(direct, 7, "schneider-iem3000", "chiller"),
        ]
        settings = bridge_settings(
            mosquitto, mqtt_topic_prefix, tmp_path, devices, modbus_profiles=[GENERIC]
        )
        with running(settings) as (agent, bridge, _url):
            assert wait_until(lambda: agent.stats.readings_accepted >= 12, 30), agent.stats
            # Counters stay the device's own cumulative value as it moves on.
            gateway.set(2, IEM.registers[1], 123456790012)
            expected["ups-1"] = {"power_w": 250125.0, "energy_wh": 123456790012.0}
            mark = agent.stats.readings_accepted
            assert wait_until(lambda: agent.stats.readings_accepted >= mark + 12, 30)
            snap = bridge.snapshot()
        assert dict(agent.stats.rejections) == {}
        assert all(d.up and not d.refused and not d.errors for d in snap.devices), snap
        assert snap.acknowledged == snap.published >= 24
        rows_by_meter = stored(tmp_path / "s.sqlite")
        assert set(rows_by_meter) == set(expected)
        for meter, rows in rows_by_meter.items():
            assert all(set(r) == {"power_w", "energy_wh"} for r in rows), meter
            assert rows[-1] == expected[meter], meter
            assert {r["power_w"] for r in rows} == {expected[meter]["power_w"]}, meter
        energy = [r["energy_wh"] for r in rows_by_meter["ups-1"]]
        assert set(energy) == {123456789012.0, 123456790012.0}
        assert energy == sorted(energy)
        # Three units behind one gateway, polled over one connection; batching means the
        # SDM630 costs one request per poll and the iEM3000 two.
        assert gateway.requests > 0
    finally:
        gateway.close()
        direct.close()


def shipped_or_generic() -> Any:
    """The generic profile as the bridge will see it (validated from GENERIC)."""
    from greendc.config import ModbusProfile

    return ModbusProfile.model_validate(GENERIC)


def test_slow_garbage_and_vanished_devices_go_stale_and_recover(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    good = ModbusDevices({1: SDM}).start()
    flaky = ModbusDevices({1: SDM}).start()
    garbage = GarbageServer().__enter__()
    try:
        for gw in (good, flaky):
            gw.set(1, SDM.registers[0], 1000.0)
            gw.set(1, SDM.registers[1], 10.0)
        devices = [
            _device(good, 1, "eastron-sdm630", "incomer"),
            _device(flaky, 1, "eastron-sdm630", "ups-1"),
            {**_device(good, 1, "eastron-sdm630", "ups-2"), "name": "junk", "port": garbage.port},
            # A unit id the gateway does not have: the gateway answers a Modbus exception.
            {**_device(good, 9, "eastron-sdm630", "chiller"), "name": "absent-unit"},
        ]
        settings = bridge_settings(
            mosquitto, mqtt_topic_prefix, tmp_path, devices, modbus_profiles=[GENERIC]
        )
        flaky_name = f"gw{flaky.port}-u1"
        store = tmp_path / "s.sqlite"
        with running(settings) as (agent, bridge, url):
            assert wait_until(lambda: bridge.snapshot().device(flaky_name).up, 20)
            # Garbage: bytes that are not Modbus; the device fails, nothing is published.
            junk = wait_until(lambda: failing(url, "junk"), 20)
            assert junk is not None and junk["reason"] == "garbage", junk
            assert "not a Modbus response" in junk["detail"]
            absent = wait_until(lambda: failing(url, "absent-unit"), 20)
            assert absent is not None and absent["reason"] == "device_error", absent
            assert "Modbus exception code" in absent["detail"]

            # Garbage values: a float register holding NaN is refused and counted; the
            # poll's other value (energy) is still published.
            good.set(1, SDM.registers[0], float("nan"))
            assert wait_until(
                lambda: bridge.snapshot().device(f"gw{good.port}-u1").refused["non_finite"] >= 2
            )
            good.set(1, SDM.registers[0], 1000.0)

            # Slow: every answer takes longer than the request timeout.
            flaky.delay_s = 1.0
            slow = wait_until(lambda: failing(url, flaky_name), 20)
            assert slow is not None and slow["reason"] == "timeout", slow
            flaky.delay_s = 0.0
            assert wait_until(lambda: bridge.snapshot().device(flaky_name).up, 20)

            # Gone: the device stops listening, then comes back on the same port.
            flaky.stop()
            gone = wait_until(lambda: failing(url, flaky_name), 20)
            assert gone is not None and gone["reason"] in ("unreachable", "timeout"), gone
            before = settled_count(agent, store, "ups-1")
            # While it is gone, nothing is invented for its meter.
            mark = agent.stats.readings_accepted
            assert wait_until(lambda: agent.stats.readings_accepted >= mark + 6, 20)
            assert settled_count(agent, store, "ups-1") == before
            assert bridge.snapshot().device(flaky_name).consecutive_failures >= 2
            flaky.set(1, SDM.registers[0], 2000.0)
            flaky.start()
            assert wait_until(lambda: bridge.snapshot().device(flaky_name).up, 20)
            assert wait_until(lambda: failing(url, flaky_name) is None, 20)
            assert wait_until(lambda: settled_count(agent, store, "ups-1") > before, 20)
            metrics = scrape(url)
            snap = bridge.snapshot()
        errors = {
            (s.labels["device"], s.labels["reason"]): s.value
            for s in metrics["greendc_bridge_poll_errors_total"]
        }
        assert errors[("junk", "garbage")] >= 1
        assert errors[(flaky_name, "timeout")] >= 1
        assert snap.device("junk").up is False
        assert snap.device(f"gw{good.port}-u1").errors == {}
        rows = stored(tmp_path / "s.sqlite")
        assert "ups-2" not in rows and "chiller" not in rows  # failing devices: no readings
        incomer = rows["incomer"]
        assert {r["power_w"] for r in incomer if "power_w" in r} == {1000.0}  # NaN never stored
        assert any(set(r) == {"energy_wh"} for r in incomer)  # the poll with NaN power
        assert {r["power_w"] for r in rows["ups-1"]} == {1000.0, 2000.0}  # no zero, no guess
        assert dict(agent.stats.rejections) == {}
    finally:
        garbage.__exit__(None, None, None)
        good.close()
        flaky.close()


def test_the_greendc_bridge_command_publishes_and_stops_cleanly(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    import paho.mqtt.client as mqtt
    import yaml
    from paho.mqtt.enums import CallbackAPIVersion

    from tests.support.builders import SITES
    from tests.support.servers import free_port

    metrics_port = free_port()
    topic = f"{mqtt_topic_prefix}/greendc"
    with ModbusDevices({5: IEM}) as gw:
        gw.set(5, IEM.registers[0], 12.5)
        gw.set(5, IEM.registers[1], 777)
        config = {
            "mqtt": {"url": mosquitto.url},
            "sites": SITES,
            "bridges": {
                "client_id": f"cli-{mqtt_topic_prefix.replace('/', '-')}",
                "topic_prefix": topic,
                "interval_seconds": 0.2,
                "metrics": {"port": metrics_port},
                "devices": [_device(gw, 5, "schneider-iem3000", "incomer")],
            },
        }
        path = tmp_path / "bridge.yaml"
        path.write_text(yaml.safe_dump(config))
        got: list[tuple[str, dict[str, float]]] = []
        sub = mqtt.Client(CallbackAPIVersion.VERSION2)
        sub.on_message = lambda _c, _u, m: got.append((m.topic, json.loads(m.payload)))
        sub.connect(mosquitto.host, mosquitto.port)
        sub.subscribe(f"{topic}/#", qos=1)
        sub.loop_start()
        log = tmp_path / "bridge.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(
                [sys.executable, "-m", "greendc.app.cli", "bridge", "--config", str(path)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        try:
            assert wait_until(lambda: len(got) >= 2 or proc.poll() is not None, 30)
            assert proc.poll() is None, log.read_text()[-3000:]
            url = f"http://127.0.0.1:{metrics_port}/metrics"
            up = wait_until(lambda: scrape(url).get("greendc_bridge_device_up"), 10)
            assert [s.value for s in up] == [1.0]
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            sub.loop_stop()
            sub.disconnect()
    t, payload = got[0]
    assert t == f"{topic}/sg1/incomer"
    assert payload["power_w"] == 12500.0 and payload["energy_wh"] == 777.0
    assert set(payload) == {"ts", "power_w", "energy_wh"}
