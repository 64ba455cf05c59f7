"""What a large campus costs one agent before any traffic: config, live KPIs, a snapshot.

For 1,000, 10,000 and 100,000 configured meters (one site: an incomer, nine coolers, the
rest IT, the default 5 m / 1 h / 24 h windows) it measures, each in a fresh process:

- loading and validating the config, as YAML (libyaml when present) and as JSON (orjson);
- the memory of the settings and of the live KPI state (Python allocations, tracemalloc);
- the CPU per reading of ``LiveKPIs.add_many`` over ten readings per meter;
- one ``LiveKPIs.snapshot`` (what a scrape recomputes once per KPI interval, under the
  agent's lock).

    .venv/bin/python bench/campus.py            # writes bench/results/campus.md

No servers are needed; the end-to-end cost of 1k-100k meters (MQTT, InfluxDB, /metrics) is
the growth table of bench/run.py.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "campus.md"
SIZES = (1_000, 10_000, 100_000)
READINGS_PER_METER = 10


def measure(n: int) -> dict[str, float]:
    """One campus of ``n`` meters, measured in this process."""
    sys.path.insert(0, str(ROOT))
    import tempfile

    import yaml

    from bench.throughput.stream import bench_meters  # the side-by-side bench's meters
    from greendc.config import load_config
    from greendc.model import Reading
    from greendc.rolling import LiveKPIs

    meters = bench_meters(n)
    doc = {
        "sites": [
            {
                "name": "campus",
                "grid_zone": "SG",
                "installed_it_kw": 10_000,
                "pue_category": 1,
                "meters": meters,
            }
        ]
    }
    loads: dict[str, float] = {}
    for suffix, dump in ((".yaml", yaml.safe_dump), (".json", json.dump)):
        with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as f:
            dump(doc, f)
            path = Path(f.name)
        t0 = time.process_time()
        load_config(path, env={})
        loads[suffix] = time.process_time() - t0
        path.unlink()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(doc, f)
        path = Path(f.name)
    del doc, meters
    base = int(time.time()) // 60 * 60 - 1200
    batches = [
        [
            Reading("campus", f"m{i:06d}", "", (base + k * 60) * 1000, {"energy_wh": 1e6 + k})
            for i in range(n)
        ]
        for k in range(READINGS_PER_METER)
    ]
    # Memory as Python allocations (tracemalloc), not RSS: deterministic, and not blurred
    # by what the loads above freed.
    tracemalloc.start()
    settings = load_config(path, env={})
    settings_bytes = tracemalloc.get_traced_memory()[0]
    live = LiveKPIs(settings)
    for batch in batches:
        live.add_many(batch)
    live_bytes = tracemalloc.get_traced_memory()[0] - settings_bytes
    tracemalloc.stop()
    path.unlink()
    live = LiveKPIs(settings)
    t0 = time.process_time()
    for batch in batches:
        live.add_many(batch)
    add_us = (time.process_time() - t0) / (n * READINGS_PER_METER) * 1e6
    t0 = time.process_time()
    snap = live.snapshot(time.time())
    snapshot_s = time.process_time() - t0
    assert snap.kpis["campus"][300].inputs["E_IT"].meters == n - 10
    return {
        "meters": n,
        "yaml_load_s": round(loads[".yaml"], 3),
        "json_load_s": round(loads[".json"], 3),
        "settings_mib": round(settings_bytes / 2**20, 1),
        "live_state_mib": round(live_bytes / 2**20, 1),
        "add_us_per_reading": round(add_us, 2),
        "snapshot_s": round(snapshot_s, 3),
    }


def main() -> int:
    """Each size in its own process (so memory figures do not mix); write the table."""
    if len(sys.argv) == 3 and sys.argv[1] == "--one":
        print(json.dumps(measure(int(sys.argv[2]))))
        return 0
    rows = []
    for n in SIZES:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(n)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(rows[-1], flush=True)
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "# A large campus in one agent: config, live KPI state, snapshot",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {cpu}, Python "
        f"{platform.python_version()}. Command: `.venv/bin/python bench/campus.py`.",
        "One site; windows 5 m / 1 h / 24 h of 60 s intervals; "
        f"{READINGS_PER_METER} counter readings per meter.",
        "",
        "| configured meters | config load s, YAML / JSON | settings MiB | live KPI state MiB "
        "| add µs/reading | snapshot s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['meters']:,} | {r['yaml_load_s']} / {r['json_load_s']} | {r['settings_mib']} "
            f"| {r['live_state_mib']} | {r['add_us_per_reading']} | {r['snapshot_s']} |"
        )
    RESULTS.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
