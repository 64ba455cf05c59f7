"""The documented bridge demo, end to end: config/examples/bridge-demo.yaml's devices served
by the simulator (greendc simulate --devices), polled by the bridge, collected and stored.

The example is retargeted at free ports, the test's broker and a temporary store; nothing
else changes. Every bridged meter must arrive with the quantities its profile maps, in
plausible magnitudes, and each Modbus reading must be exactly what the simulator wrote
into the registers (after the register type's own rounding).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import pytest
import yaml

from greendc.config import parse_config
from greendc.simulator.devices import SimulatedDevices
from greendc.simulator.devices.modbus import free_tcp_port
from greendc.simulator.devices.snmp import free_udp_port
from tests.integration.bridge_support import running, stored
from tests.support.polling import wait_until
from tests.support.servers import Mosquitto

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "examples" / "bridge-demo.yaml"


def _retarget(broker: Mosquitto, prefix: str, tmp_path: Path) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["mqtt"] = {**data["mqtt"], "url": broker.url, "client_id": f"c-{prefix.replace('/', '-')}"}
    data["mappings"] = [{"topic": f"{prefix}/greendc/{{site}}/{{meter}}"}]
    data["sinks"] = {
        "embedded": {"path": str(tmp_path / "s.sqlite")},
        "spool": {"dir": str(tmp_path / "spool")},
        "flush_interval_seconds": 0.2,
    }
    data["metrics"] = {"port": 0}
    b = data["bridges"]
    b.update(
        topic_prefix=f"{prefix}/greendc",
        interval_seconds=0.5,
        metrics={"port": 0},
        client_id=f"b-{prefix.replace('/', '-')}",
    )
    ports: dict[tuple[str, int], int] = {}
    b["bacnet_local_address"] = f"127.0.0.1/8:{free_udp_port()}"
    for d in b["devices"]:
        if d["protocol"] == "bacnet":
            d["address"] = f"127.0.0.1:{free_udp_port()}"
            continue
        if d["protocol"] == "redfish":
            d["url"] = f"https://127.0.0.1:{free_tcp_port()}"
            d["ca_file"] = str(tmp_path / "demo-ca.pem")  # written by the simulator
            continue
        key = (d["protocol"], d["port"])
        if key not in ports:
            ports[key] = free_tcp_port() if d["protocol"] == "modbus" else free_udp_port()
        d["port"] = ports[key]
    return data


def test_the_bridge_demo_runs_end_to_end(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    settings = parse_config(_retarget(mosquitto, mqtt_topic_prefix, tmp_path), env={})
    with SimulatedDevices(settings, step_s=0.5) as devices:
        assert len(devices.modbus) == 1 and len(devices.agents) == 2 and not devices.skipped
        assert len(devices.redfish) == 1 and (tmp_path / "demo-ca.pem").exists()
        assert len(devices.bacnet) == 1
        with running(settings) as (collector, bridge, _url):
            assert wait_until(lambda: collector.stats.readings_accepted >= 18, 30)
            snap = bridge.snapshot()
    assert all(d.up and not d.errors and not d.refused for d in snap.devices), [
        (d.device, d.up, d.errors, d.refused, d.last_detail) for d in snap.devices
    ]
    rows = stored(tmp_path / "s.sqlite")
    assert set(rows) == {"incomer", "lighting", "chiller", "ups-1", "ups-2", "noc-server"}
    assert all(
        set(r) == {"power_w", "energy_wh"}
        for m in ("incomer", "lighting", "ups-2", "noc-server")
        for r in rows[m]
    )
    # The BACnet chiller: kilowatts and kilowatt-hours converted, outdoor temperature in C.
    assert all(set(r) == {"power_w", "energy_wh", "temp_c"} for r in rows["chiller"])
    assert all(15 < r["temp_c"] < 45 for r in rows["chiller"])
    assert all(r["temp_c"] == 25.0 for r in rows["ups-1"])  # UPS-MIB battery temperature
    for meter, rows_ in rows.items():
        assert all(10 < r["power_w"] < 2_000_000 for r in rows_), (meter, rows_[-1])
    # The SDM630's power is a float32 register: what is stored is the simulator's watts
    # rounded to float32, exactly.
    p = rows["incomer"][-1]["power_w"]
    assert struct.unpack(">f", struct.pack(">f", p))[0] == p
