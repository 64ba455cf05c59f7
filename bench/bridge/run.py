"""Benchmark of one ``greendc bridge`` process: devices polled per second and CPU per poll.

    .venv/bin/python bench/bridge/run.py        # 5,000 Modbus @ 10 s, then 2,000 SNMP @ 30 s
    .venv/bin/python bench/bridge/run.py --modbus 500 --snmp 200 --seconds 20   # smoke run

Per protocol: a child process serves the simulated devices (pymodbus gateways with 100 unit
ids each laid out like an Eastron SDM630; pysnmp agents with 100 APC metered outlets each),
a real Mosquitto takes the readings, and the bridge runs in this process exactly as
``greendc bridge`` runs it (scheduler, validation, QoS 1 publishing; /metrics off). After
every device has been polled once, the CPU time of this process (all its threads, from
``time.process_time``) and the polls completed are measured over ``--seconds``. The aim of
the issue: 5,000 Modbus devices every 10 s and 2,000 SNMP PDUs every 30 s within one core.
Results: bench/results/bridge-latest.md (and .json); the recorded runs: bench/results/bridge.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from greendc.collector.bridge import Bridge  # noqa: E402
from greendc.config import parse_config  # noqa: E402
from tests.support.servers import Mosquitto  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def _devices(kind: str, n: int, per: int, tmp: Path) -> tuple[subprocess.Popen[bytes], Any]:
    groups = -(-n // per)
    out = tmp / f"{kind}-devices.json"
    flags = (
        ["--gateways", str(groups), "--units", str(per)]
        if kind == "modbus"
        else ["--agents", str(groups), "--outlets", str(per)]
    )
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "bridge" / "devices.py"), *flags, "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not out.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the {kind} device process did not start")
        time.sleep(0.1)
    return proc, json.loads(out.read_text())


def _config(kind: str, n: int, interval: float, info: Any, broker: Mosquitto) -> Any:
    devices = []
    if kind == "modbus":
        for i in range(n):
            host, port = info["modbus"][i // info["units"]]
            devices.append(
                {
                    "protocol": "modbus",
                    "name": f"m{i}",
                    "host": host,
                    "port": port,
                    "unit_id": i % info["units"] + 1,
                    "profile": "eastron-sdm630",
                    "site": "bench",
                    "meter": f"m{i}",
                }
            )
    else:
        for i in range(n):
            host, port = info["snmp"][i // info["outlets"]]
            devices.append(
                {
                    "protocol": "snmp",
                    "name": f"s{i}",
                    "host": host,
                    "port": port,
                    "community": "public",
                    "profile": "apc-rpdu2-outlet",
                    "index": i % info["outlets"] + 1,
                    "site": "bench",
                    "meter": f"s{i}",
                }
            )
    data = {
        "mqtt": {"url": broker.url, "max_inflight": 1000},
        "sites": [
            {
                "name": "bench",
                "grid_zone": "SG",
                "installed_it_kw": 1000,
                "pue_category": 1,
                "meters": [{"name": "incomer", "role": "facility"}],
            }
        ],
        "bridges": {
            "client_id": f"bench-bridge-{kind}",
            "topic_prefix": "greendc-bench",
            "interval_seconds": interval,
            "timeout_seconds": 5,
            "max_concurrency": 512,
            "metrics": {"enabled": False},
            "devices": devices,
        },
    }
    return parse_config(data, env={})


def run(
    kind: str, n: int, interval: float, seconds: float, tmp: Path, per: int = 100
) -> dict[str, Any]:
    """One protocol: start devices and broker, warm up one interval, measure ``seconds``.

    ``per`` devices share one simulated server (units of a Modbus gateway, outlets of an
    SNMP agent)."""
    proc, info = _devices(kind, n, per, tmp)
    try:
        with Mosquitto() as broker:
            bridge = Bridge(_config(kind, n, interval, info, broker))
            bridge.start()
            try:
                assert bridge.wait_connected(30)
                deadline = time.monotonic() + interval * 3 + 60
                while time.monotonic() < deadline:
                    snap = bridge.snapshot()
                    if all(d.polled for d in snap.devices):
                        break
                    time.sleep(0.5)
                s0 = bridge.snapshot()
                cpu0, t0 = time.process_time(), time.monotonic()
                time.sleep(seconds)
                s1 = bridge.snapshot()
                cpu1, t1 = time.process_time(), time.monotonic()
            finally:
                bridge.stop()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
    ok = s1.polls.get((kind, "ok"), 0) - s0.polls.get((kind, "ok"), 0)
    failed = s1.polls.get((kind, "failed"), 0) - s0.polls.get((kind, "failed"), 0)
    wall, cpu = t1 - t0, cpu1 - cpu0
    return {
        "protocol": kind,
        "devices": n,
        "devices_per_server": per,
        "interval_seconds": interval,
        "target_polls_per_second": n / interval,
        "measured_seconds": round(wall, 1),
        "polls_ok": ok,
        "polls_failed": failed,
        "polls_per_second": round(ok / wall, 1),
        "cpu_seconds": round(cpu, 2),
        "cpu_share_of_one_core": round(cpu / wall, 3),
        "cpu_microseconds_per_poll": round(cpu / max(ok, 1) * 1e6),
        "published": s1.published - s0.published,
        "acknowledged": s1.acknowledged - s0.acknowledged,
        "devices_up_at_end": sum(d.up for d in s1.devices),
    }


def main() -> int:
    """Run the Modbus and SNMP phases and write the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--modbus", type=int, default=5000, help="Modbus devices (0: skip)")
    p.add_argument("--modbus-interval", type=float, default=10.0)
    p.add_argument("--snmp", type=int, default=2000, help="SNMP devices (0: skip)")
    p.add_argument("--snmp-interval", type=float, default=30.0)
    p.add_argument("--seconds", type=float, default=60.0, help="measured window per protocol")
    p.add_argument("--per-server", type=int, default=100, help="devices per simulated server")
    p.add_argument("--out", default=str(RESULTS / "bridge-latest"))
    args = p.parse_args()
    import tempfile

    rows = []
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="greendc-bridge-bench-") as tmp:
        if args.modbus:
            rows.append(
                run(
                    "modbus",
                    args.modbus,
                    args.modbus_interval,
                    args.seconds,
                    Path(tmp),
                    args.per_server,
                )
            )
        if args.snmp:
            rows.append(
                run("snmp", args.snmp, args.snmp_interval, args.seconds, Path(tmp), args.per_server)
            )
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cpu = platform.processor() or platform.machine()
    machine = f"{os.cpu_count()} CPUs, {cpu}, Python {platform.python_version()}"
    lines = [
        f"# greendc bridge benchmark ({when})",
        "",
        f"{machine}; load average at start {load[0]:.2f};"
        f" {args.seconds:g} s measured per protocol.",
        "",
        "| protocol | devices | interval | target polls/s | polls/s | failed"
        " | CPU share of one core | CPU per poll |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['protocol']} | {r['devices']:,} | {r['interval_seconds']:g} s"
            f" | {r['target_polls_per_second']:.0f} | {r['polls_per_second']:.1f}"
            f" | {r['polls_failed']} | {r['cpu_share_of_one_core']:.0%}"
            f" | {r['cpu_microseconds_per_poll']:,} µs |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(
        json.dumps({"date": when, "machine": machine, "load": load, "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
