"""Simulated devices for the bridge benchmark, in their own process (their CPU is not the
bridge's): Modbus TCP gateways with many unit ids each, and SNMP agents with many metered
outlets each. Writes what it serves as JSON to --out, then serves until SIGTERM.

    python bench/bridge/devices.py --gateways 50 --units 100 --agents 20 --outlets 100 --out F
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from greendc.config import shipped_modbus_profiles
from greendc.simulator.devices.modbus import ModbusDevices
from greendc.simulator.devices.snmp import SnmpAgent

OUTLET_POWER = "1.3.6.1.4.1.318.1.1.26.9.4.3.1.7"
OUTLET_ENERGY = "1.3.6.1.4.1.318.1.1.26.9.4.3.1.11"


def main() -> int:
    """Start the devices, write their addresses, serve until SIGTERM."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--gateways", type=int, default=0)
    p.add_argument("--units", type=int, default=100)
    p.add_argument("--agents", type=int, default=0)
    p.add_argument("--outlets", type=int, default=100)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    sdm = shipped_modbus_profiles()["eastron-sdm630"]
    gateways = []
    for g in range(args.gateways):
        gw = ModbusDevices(dict.fromkeys(range(1, args.units + 1), sdm)).start()
        for unit in range(1, args.units + 1):
            gw.set(unit, sdm.registers[0], 1000.0 + g + unit / 4)
            gw.set(unit, sdm.registers[1], 5000.0 + unit)
        gateways.append(gw)
    agents = []
    for a in range(args.agents):
        agent = SnmpAgent().start()
        values: dict[str, tuple[int, object]] = {}
        for i in range(1, args.outlets + 1):
            values[f"{OUTLET_POWER}.{i}"] = (66, 100 + a + i)
            values[f"{OUTLET_ENERGY}.{i}"] = (70, 1000 * i)
        agent.set(values)
        agents.append(agent)
    Path(args.out).write_text(
        json.dumps(
            {
                "modbus": [[gw.host, gw.port] for gw in gateways],
                "units": args.units,
                "snmp": [[a.host, a.port] for a in agents],
                "outlets": args.outlets,
            }
        )
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    for gw in gateways:
        gw.close()
    for agent in agents:
        agent.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
