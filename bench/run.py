"""greendc throughput benchmark: the same MQTT stream through every contender, side by side.

    .venv/bin/python bench/run.py            # full default run (< 10 minutes on 2 cores)
    .venv/bin/python bench/run.py --quick    # 20,000 readings, a smoke test in about a minute

For each stream (single-reading messages; gateway batches of 50) and QoS (0, 1) it starts a
fresh Mosquitto (persistence off, max_queued_messages 0), starts one contender, waits until
the broker reports its subscriptions, then publishes a pre-encoded burst from a raw socket
(near-zero publisher CPU, identical for everyone; QoS 1 keeps at most --qos1-window
unacknowledged, under paho's 65,535 limit) and measures until the last reading is verified
consumed or stored:

- limit: ``mosquitto_sub -C N`` to /dev/null (a C client; the broker path's ceiling);
- paho: a bare paho-mqtt subscriber that only json.loads (naive Python's ceiling);
- greendc: ``greendc collect`` into a real influxd 1.x, verified by ``SELECT count(power_w)``
  and ``greendc_agent_readings_accepted_total`` on its /metrics;
- mqtt-exporter 1.12.1 (MQTT -> Prometheus), verified by its ``mqtt_message_total``;
- node-red (4.x + node-red-contrib-influxdb 0.7.0): mqtt in -> function -> join (5000 or
  0.25 s) -> influxdb batch into the same influxd, verified by count.

Per contender: messages/s and readings/s from first publish to verified end, CPU seconds of
the consumer process (utime+stime from /proc, or wait4 rusage for those that exit) per
message and per 100k readings, peak RSS (VmHWM / ru_maxrss), readings lost. Then the cost
growth of greendc at 1k, 10k and 100k meters, and a /metrics scrape of 100k series.
Results: bench/results/latest.md and latest.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.throughput.common import RESULTS, WORK  # noqa: E402
from bench.throughput.contenders import Contender, Ctx, Greendc, contenders  # noqa: E402
from bench.throughput.measure import Result, measure  # noqa: E402
from bench.throughput.profile import cprofile_handle, run_py_spy, time_scrape  # noqa: E402
from bench.throughput.render import render, targets  # noqa: E402
from bench.throughput.stream import make_stream  # noqa: E402
from tests.support.machine import machine  # noqa: E402
from tests.support.servers import InfluxDB1  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("--readings", type=int, default=200_000, help="readings per burst")
    ap.add_argument("--meters", type=int, default=1000, help="distinct meters (topics)")
    ap.add_argument("--batch", type=int, default=50, help="readings per gateway batch")
    ap.add_argument("--qos", default="0,1", help="QoS levels to run, e.g. 0 or 0,1")
    ap.add_argument("--streams", default="single,batch50")
    ap.add_argument(
        "--only",
        default="",
        help="contenders: limit,paho,greendc,greendc-311,greendc-nokpi,mqtt-exporter,node-red "
        "(default all)",
    )
    ap.add_argument(
        "--growth",
        default="1000,10000,100000",
        help="meter counts for the cost-growth table ('' to skip)",
    )
    ap.add_argument("--no-profile", action="store_true", help="skip py-spy and cProfile")
    ap.add_argument(
        "--qos1-window",
        type=int,
        default=20_000,
        help="max unacknowledged QoS 1 publishes (paho refuses > 65,535)",
    )
    ap.add_argument(
        "--idle-seconds",
        type=float,
        default=15.0,
        help="give up when nothing progresses this long after publishing",
    )
    ap.add_argument("--quick", action="store_true", help="20,000 readings, growth 1k/10k")
    ap.add_argument("--keep-work", action="store_true", help="keep bench/.work/runs/*")
    ap.add_argument("--out", default=str(RESULTS), help="where latest.md/json go")
    args = ap.parse_args(argv)
    # SIGTERM (and SIGINT, even when started in the background) unwind through the
    # finally blocks, so every server and consumer started here is stopped by its PID.
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.quick:
        args.readings = 20_000
        if args.growth == ap.get_default("growth"):
            args.growth = "1000,10000"
    qos_levels = [int(q) for q in args.qos.split(",") if q]
    kinds = [k for k in args.streams.split(",") if k]
    only = {n for n in args.only.split(",") if n}
    base_ts = int(time.time()) - args.readings // args.meters - 120
    WORK.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK / "runs", ignore_errors=True)
    began = time.monotonic()
    data: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": "python bench/run.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(servers=("mosquitto", "influxd", "node")),
        "runs": [],
        "growth": [],
        "scrape": {},
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }
    runs: list[Result] = []
    growth: list[Result] = []
    with InfluxDB1(WORK / "influxd") as influx:
        streams = {
            k: make_stream(k, args.readings, args.meters, args.batch, base_ts) for k in kinds
        }
        for kind in kinds:
            for qos in qos_levels:
                for make in contenders(only):
                    c = make()
                    if kind not in c.streams:
                        continue
                    print(
                        f"[{time.monotonic() - began:6.1f}s] {kind} QoS {qos}: {c.name} ...",
                        flush=True,
                    )
                    r = measure(c, streams[kind], qos, influx, args)
                    if r.verified == 0 and not r.status.startswith("skipped"):
                        # Seen once under heavy machine load: a consumer that received
                        # nothing. One retry, recorded, keeps the table complete.
                        print(f"    {r.status} with nothing verified; retrying once", flush=True)
                        r = measure(make(), streams[kind], qos, influx, args)
                        r.extra["retried"] = True
                    runs.append(r)
                    print(
                        f"    {r.status}: {r.readings_per_s:,.0f} readings/s, "
                        f"{r.cpu_us_per_message:.1f} µs CPU/msg, {r.peak_rss_mib:.0f} MiB, "
                        f"lost {r.lost}",
                        flush=True,
                    )
        sizes = [int(s) for s in args.growth.split(",") if s]
        if not only or "greendc" in only:
            for meters in sizes:
                stream = make_stream(
                    "batch50",
                    max(args.readings, 2 * meters),
                    meters,
                    args.batch,
                    int(time.time()) - 300,
                )
                scrape_it = meters == max(sizes)
                print(
                    f"[{time.monotonic() - began:6.1f}s] growth: greendc with {meters:,} "
                    "meters ...",
                    flush=True,
                )

                def keep(
                    c: Contender, _ctx: Ctx, scrape_it: bool = scrape_it, meters: int = meters
                ) -> dict[str, Any]:
                    if not scrape_it or not isinstance(c, Greendc):
                        return {}
                    data["scrape"] = {"meters": meters, **time_scrape(c.metrics_url)}
                    return {}

                r = measure(Greendc(), stream, 0, influx, args, keep=keep)
                growth.append(r)
                print(
                    f"    {r.status}: {r.readings_per_s:,.0f} readings/s, "
                    f"{r.peak_rss_mib:.0f} MiB, lost {r.lost}",
                    flush=True,
                )
            if not args.no_profile and "single" in streams:
                print(f"[{time.monotonic() - began:6.1f}s] profiling greendc ...", flush=True)
                data["handle_profile"] = [cprofile_handle(streams[k]) for k in kinds]
                data["py_spy"] = run_py_spy(streams["single"], influx, args)
    data["runs"] = [asdict(r) for r in runs]
    data["growth"] = [asdict(r) for r in growth]
    data["targets"] = targets(runs, growth, data["scrape"])
    data["elapsed_seconds"] = round(time.monotonic() - began, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = render(data)
    (out / "latest.md").write_text(report + "\n")
    (out / "latest.json").write_text(json.dumps(data, indent=2) + "\n")
    print()
    print(report)
    print(f"written {out / 'latest.md'} and {out / 'latest.json'} in {data['elapsed_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
