"""Benchmark: the monthly report for 100 sites x 8 meters of 1-minute data, embedded store.

    .venv/bin/python bench/report/run.py [--sites 100] [--data-dir DIR] [--format ...]

Builds (once, then reuses) a SQLite store in the embedded store's schema holding March 2026
at one sample a minute per meter (energy counters; a litre counter for the water meter),
plus a config for it, then runs ``greendc report`` in a child process and records its wall
time and peak resident memory (``ru_maxrss`` of the child). Results go to stdout as one
JSON line; bench/report/results.md records them by hand with the machine they came from.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from greendc.store import EmbeddedStore  # noqa: E402

MONTH = "2026-03"
START_S = 1772323200 - 8 * 3600  # 2026-03-01 00:00 in Asia/Singapore
END_S = 1775001600 - 8 * 3600  # 2026-04-01 00:00 in Asia/Singapore
STEP_S = 60
METERS = (  # name, role, field, mean kW (or L/h), IT point
    ("incomer", "facility", "energy_wh", 1500.0, None),
    ("ups-1", "it", "energy_wh", 500.0, "ups_output"),
    ("ups-2", "it", "energy_wh", 500.0, "ups_output"),
    ("chiller", "cooling", "energy_wh", 380.0, None),
    ("lighting", "lighting", "energy_wh", 20.0, None),
    ("solar", "renewable_onsite", "energy_wh", 60.0, None),
    ("genset", "generator", "energy_wh", 0.5, None),
    ("water-main", "water", "water_l", 1800.0, None),
)


def site_name(i: int) -> str:
    """Name of bench site ``i``."""
    return f"site{i:03d}"


def write_config(data_dir: Path, n_sites: int) -> Path:
    """The bench config: ``n_sites`` identical sites on the shipped SG factors."""
    sites = []
    for i in range(n_sites):
        meters = []
        for name, role, _, _, point in METERS:
            m: dict[str, object] = {"name": name, "role": role}
            if point:
                m["point"] = point
            meters.append(m)
        sites.append(
            {
                "name": site_name(i),
                "timezone": "Asia/Singapore",
                "grid_zone": "SG",
                "installed_it_kw": 1200,
                "pue_category": 1,
                "meters": meters,
                "contracts": [{"month": MONTH, "kind": "rec", "energy_kwh": 50000}],
            }
        )
    config = {"sinks": {"embedded": {"path": str(data_dir / "bench.sqlite")}}, "sites": sites}
    path = data_dir / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def build_store(data_dir: Path, n_sites: int) -> Path:
    """Write the month of 1-minute samples (skipped when the store already holds them)."""
    path = data_dir / "bench.sqlite"
    ts = np.arange(START_S - 600, END_S + 601, STEP_S, dtype=np.int64)
    want = n_sites * len(METERS) * len(ts)
    if path.exists():
        EmbeddedStore(path).close()
        with sqlite3.connect(path) as db:
            have = db.execute("SELECT count(*) FROM greendc_reading").fetchone()[0]
        if have == want:
            return path
        path.unlink()
    EmbeddedStore(path).close()  # creates the schema
    rng = np.random.default_rng(1)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    t0 = time.monotonic()
    ts_ms = (ts * 1000).tolist()
    for i in range(n_sites):
        db.execute("BEGIN")
        for name, role, field, mean, _ in METERS:
            # A daily cycle and noise, so the per-day figures are not all equal.
            hour = (ts % 86400) / 3600.0
            rate = mean * (1 + 0.1 * np.sin(hour / 24 * 2 * np.pi)) * rng.uniform(0.95, 1.05)
            per_step = rate * (1000.0 if field == "energy_wh" else 1.0) * STEP_S / 3600.0
            counter = np.concatenate(([0.0], np.cumsum(per_step[:-1]))).tolist()
            e = counter if field == "energy_wh" else [None] * len(ts)
            w = counter if field == "water_l" else [None] * len(ts)
            db.executemany(
                "INSERT INTO greendc_reading VALUES (?, ?, ?, ?, NULL, ?, ?, NULL)",
                zip(
                    [site_name(i)] * len(ts),
                    [name] * len(ts),
                    [role] * len(ts),
                    ts_ms,
                    e,
                    w,
                    strict=True,
                ),
            )
        db.execute("COMMIT")
    db.close()
    print(f"built {want} rows in {time.monotonic() - t0:.0f} s", file=sys.stderr)
    return path


def main() -> int:
    """Build the data if needed, run the report once in a child process, print the figures."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--data-dir", default="/tmp/greendc-bench-report")
    p.add_argument("--format", default="csv,xlsx,html,pdf")
    args = p.parse_args()
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(data_dir, args.sites)
    store = build_store(data_dir, args.sites)
    out = data_dir / "out"
    cmd = [
        sys.executable,
        "-m",
        "greendc.app.cli",
        "report",
        "--config",
        str(config),
        "--month",
        MONTH,
        "--out",
        str(out),
        "--format",
        args.format,
        "--source",
        "embedded",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_kib = usage.ru_maxrss  # the largest single process: the report or one worker
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
    rows = n_rows = 0
    with sqlite3.connect(store) as db:
        n_rows = db.execute("SELECT count(*) FROM greendc_reading").fetchone()[0]
    csv_path = out / f"greendc-report-{MONTH}.csv"
    if csv_path.exists():
        rows = len(csv_path.read_text(encoding="utf-8").splitlines()) - 1
    result = {
        "sites": args.sites,
        "meters_per_site": len(METERS),
        "readings": n_rows,
        "formats": args.format,
        "exit_code": proc.returncode,
        "wall_seconds": round(wall, 1),
        "peak_rss_mib": round(peak_kib / 1024, 0),
        # CPU time of the report and its workers: comparable across machine load.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "csv_rows": rows,
        "cpus": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
    }
    print(json.dumps(result))
    return 0 if proc.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
