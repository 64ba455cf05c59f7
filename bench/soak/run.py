"""greendc soak test: hours of a realistic stream, memory and spool sampled (not in CI).

    .venv/bin/python bench/soak/run.py                         # 1 h, 2 sites x 500 meters / 10 s
    .venv/bin/python bench/soak/run.py --duration-seconds 600  # 10 minutes
    .venv/bin/python bench/soak/run.py --outage-at-seconds 180 --outage-seconds 60
    .venv/bin/python bench/soak/run.py --interval-seconds 1 --spool-max-bytes 1048576 \
        --outage-at-seconds 60 --outage-seconds 180   # an outage longer than the spool holds

A real Mosquitto (persistence on) and a real InfluxDB 1.x are started on free loopback ports;
``greendc collect`` runs as a subprocess with the InfluxDB sink and its durable spool. Every
meter publishes one native QoS 1 message per interval. Every ``--sample-seconds`` the
collector's RSS (/proc/PID/status VmRSS) and its /metrics (readings accepted and written,
spool bytes/batches/age, queue, drops) are sampled. With ``--outage-seconds`` InfluxDB is
stopped for that long mid-run: the spool must grow, then drain to zero after the restart.
With ``--spool-max-bytes`` smaller than the outage needs, the spool fills and the collector
(``ack: durable``) holds back: it stops acknowledging and reading, the broker queues, and
nothing may be dropped.
At the end the collector gets SIGTERM (it flushes) and InfluxDB is asked how many points it
holds: published == stored is the verdict. Results go to ``--out`` as Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402
from paho.mqtt.enums import CallbackAPIVersion  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from tests.support.procfs import proc_rss_kib  # noqa: E402
from tests.support.servers import InfluxDB1, Mosquitto, free_port, http_request  # noqa: E402

DB = "greendc_soak"


class SoakError(RuntimeError):
    """The soak run could not proceed."""


@dataclass
class Sample:
    """One sampling point."""

    elapsed_s: float
    published: int
    accepted: int
    written: int
    rss_kib: int
    queue_batches: int
    spool_batches: int
    spool_bytes: int
    spool_age_s: float
    dropped: int
    held: int
    influx_up: bool


def scrape(url: str) -> dict[str, float]:
    """Sum each metric family's samples (per name) from one /metrics scrape."""
    status, body = http_request(url, timeout_seconds=5.0)
    if status != 200:
        raise SoakError(f"{url} answered {status}")
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[s.name] = out.get(s.name, 0.0) + s.value
    return out


def write_config(
    path: Path,
    broker: Mosquitto,
    influx: InfluxDB1,
    sites: int,
    meters: int,
    metrics_port: int,
    workdir: Path,
    spool_max_bytes: int | None = None,
) -> None:
    """A collector config for ``sites`` sites of ``meters`` meters each."""
    site_list = []
    for s in range(sites):
        ms: list[dict[str, Any]] = [{"name": "incomer", "role": "facility"}]
        ms += [
            {"name": f"it-{m:04d}", "role": "it", "point": "ups_output"} for m in range(meters - 1)
        ]
        site_list.append(
            {
                "name": f"soak{s}",
                "grid_zone": "SG",
                "installed_it_kw": 1000,
                "pue_category": 1,
                "meters": ms,
            }
        )
    config = {
        "mqtt": {"url": broker.url, "client_id": "greendc-soak", "reconnect_max_seconds": 5},
        "sinks": {
            "influxdb_v1": {"url": influx.url, "db": DB, "timeout_seconds": 5},
            "spool": {
                "dir": str(workdir / "spool"),
                **({"max_bytes": spool_max_bytes} if spool_max_bytes else {}),
            },
        },
        "metrics": {"port": metrics_port},
        "sites": site_list,
        "log_level": "INFO",
    }
    path.write_text(json.dumps(config, indent=1))  # JSON is YAML


class Publisher:
    """Publishes one native QoS 1 message per meter per interval, on its own thread."""

    def __init__(self, broker: Mosquitto, sites: int, meters: int, interval_s: float) -> None:
        """Connect; nothing is published until :meth:`start`."""
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="greendc-soak-pub", protocol=mqtt.MQTTv5
        )
        self.client.max_inflight_messages_set(2000)
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.topics = [
            (f"greendc/soak{s}/{name}", s * meters + m)
            for s in range(sites)
            for m, name in enumerate(["incomer"] + [f"it-{i:04d}" for i in range(meters - 1)])
        ]
        self.interval_s = interval_s
        self.published = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-publisher", daemon=True)
        self.energy_wh = [0.0] * len(self.topics)

    def start(self) -> None:
        """Start publishing."""
        self._thread.start()

    def _run(self) -> None:
        next_tick = time.monotonic()
        while not self._stop.is_set():
            now = time.time()
            last = None
            for topic, i in self.topics:
                power = 2000.0 + (i % 97) * 10.0
                self.energy_wh[i] += power * self.interval_s / 3600.0
                body = json.dumps({"ts": now, "power_w": power, "energy_wh": self.energy_wh[i]})
                last = self.client.publish(topic, body, qos=1)
                self.published += 1
            if last is not None:
                last.wait_for_publish(60)
            next_tick += self.interval_s
            self._stop.wait(max(0.0, next_tick - time.monotonic()))

    def stop(self) -> None:
        """Stop publishing and disconnect (after the last tick was acknowledged)."""
        self._stop.set()
        self._thread.join()
        self.client.disconnect()
        self.client.loop_stop()


def influx_count(influx: InfluxDB1) -> int:
    """Points stored (count of power_w over every series)."""
    res = influx.query(DB, "SELECT count(power_w) FROM greendc_reading")
    series = res["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The soak run; returns its summary."""
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    samples: list[Sample] = []
    with Mosquitto() as broker, InfluxDB1() as influx:
        influx.create_database(DB)
        port = free_port()
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        cfg = work / "soak.yaml"
        write_config(cfg, broker, influx, args.sites, args.meters, port, work, args.spool_max_bytes)
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENDC_")}
        log = (work / "collector.log").open("wb")
        proc = subprocess.Popen(
            [str(ROOT / ".venv/bin/greendc"), "collect", "--config", str(cfg)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=work,
        )
        pub: Publisher | None = None
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if scrape(metrics_url).get("greendc_agent_mqtt_connected") == 1:
                        break
                except (OSError, SoakError):
                    pass
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SoakError("the collector did not come up; see collector.log")
                time.sleep(0.2)
            pub = Publisher(broker, args.sites, args.meters, args.interval_seconds)
            t0 = time.monotonic()
            pub.start()
            outage_done = args.outage_seconds <= 0
            next_sample = t0
            while True:
                elapsed = time.monotonic() - t0
                if elapsed >= args.duration_seconds:
                    break
                if not outage_done and influx.running and elapsed >= args.outage_at_seconds:
                    print(
                        f"[{elapsed:6.0f} s] stopping InfluxDB for {args.outage_seconds} s",
                        flush=True,
                    )
                    influx.stop()
                if (
                    not outage_done
                    and not influx.running
                    and elapsed >= args.outage_at_seconds + args.outage_seconds
                ):
                    influx.start()
                    outage_done = True
                    print(f"[{elapsed:6.0f} s] InfluxDB is back", flush=True)
                if time.monotonic() >= next_sample:
                    samples.append(
                        take_sample(metrics_url, proc.pid, pub.published, elapsed, influx.running)
                    )
                    s = samples[-1]
                    print(
                        f"[{elapsed:6.0f} s] published {s.published} written {s.written} "
                        f"rss {s.rss_kib} KiB spool {s.spool_batches} batches/"
                        f"{s.spool_bytes} B held {s.held}",
                        flush=True,
                    )
                    next_sample += args.sample_seconds
                time.sleep(0.5)
            pub.stop()
            published = pub.published
            pub = None
            # Drain: every published reading written (or the deadline).
            drain_deadline = time.monotonic() + 120
            while time.monotonic() < drain_deadline:
                m = scrape(metrics_url)
                if (
                    m.get("greendc_sink_readings_written_total", 0) >= published
                    and m.get("greendc_spool_batches", 0) == 0
                ):
                    break
                time.sleep(0.5)
            samples.append(
                take_sample(metrics_url, proc.pid, published, time.monotonic() - t0, True)
            )
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
            stored = influx_count(influx)
        finally:
            if pub is not None:
                pub.stop()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    return summarise(args, samples, published, stored, code)


def take_sample(url: str, pid: int, published: int, elapsed: float, up: bool) -> Sample:
    """Scrape the collector and read its RSS."""
    m = scrape(url)
    return Sample(
        elapsed_s=round(elapsed, 1),
        published=published,
        accepted=int(m.get("greendc_agent_readings_accepted_total", 0)),
        written=int(m.get("greendc_sink_readings_written_total", 0)),
        rss_kib=proc_rss_kib(pid),
        queue_batches=int(m.get("greendc_sink_queue_batches", 0)),
        spool_batches=int(m.get("greendc_spool_batches", 0)),
        spool_bytes=int(m.get("greendc_spool_bytes", 0)),
        spool_age_s=round(m.get("greendc_spool_oldest_age_seconds", 0.0), 1),
        dropped=int(m.get("greendc_spool_dropped_readings_total", 0)),
        held=int(m.get("greendc_spool_held_readings", 0)),
        influx_up=up,
    )


def summarise(
    args: argparse.Namespace, samples: list[Sample], published: int, stored: int, code: int
) -> dict[str, Any]:
    """The run's verdict and the figures for the report."""
    steady = [s for s in samples if s.elapsed_s >= min(120.0, args.duration_seconds / 4)]
    rss = [s.rss_kib for s in steady] or [s.rss_kib for s in samples]
    return {
        "when": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": args.duration_seconds,
        "rate": f"{args.sites} sites x {args.meters} meters every {args.interval_seconds} s "
        f"({args.sites * args.meters / args.interval_seconds:.0f} readings/s)",
        "outage": (
            f"InfluxDB stopped at {args.outage_at_seconds} s for {args.outage_seconds} s"
            if args.outage_seconds > 0
            else "none"
        ),
        "published": published,
        "stored": stored,
        "lost": published - stored,
        "dropped": samples[-1].dropped if samples else 0,
        "exit_code": code,
        "rss_min_kib": min(rss),
        "rss_max_kib": max(rss),
        "spool_max_bytes": max(s.spool_bytes for s in samples),
        "spool_limit_bytes": args.spool_max_bytes,
        "held_max": max(s.held for s in samples),
        "spool_max_age_s": max(s.spool_age_s for s in samples),
        "spool_end_batches": samples[-1].spool_batches if samples else 0,
        "samples": [s.__dict__ for s in samples],
    }


def markdown(summary: dict[str, Any]) -> str:
    """The summary as a Markdown section."""
    lines = [
        f"## Soak run, {summary['when']}",
        "",
        f"- duration: {summary['duration_s']:.0f} s; rate: {summary['rate']}",
        f"- outage: {summary['outage']}",
        f"- published {summary['published']}, stored in InfluxDB {summary['stored']}, "
        f"lost {summary['lost']}, dropped (spool full) {summary['dropped']}; "
        f"collector exit code after SIGTERM {summary['exit_code']}",
        f"- collector RSS after warm-up: {summary['rss_min_kib']}..{summary['rss_max_kib']} KiB",
        f"- spool peak {summary['spool_max_bytes']} bytes, oldest batch at most "
        f"{summary['spool_max_age_s']} s old; batches left at the end: "
        f"{summary['spool_end_batches']}",
        f"- spool limit (sinks.spool.max_bytes): {summary['spool_limit_bytes'] or 'default'}; "
        f"readings held unacknowledged at most: {summary['held_max']}",
        "",
        "| t (s) | published | written | RSS (KiB) | queue | spool batches | spool bytes "
        "| spool age (s) | dropped | held | InfluxDB up |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---:|",
    ]
    for s in summary["samples"]:
        lines.append(
            f"| {s['elapsed_s']} | {s['published']} | {s['written']} | {s['rss_kib']} "
            f"| {s['queue_batches']} | {s['spool_batches']} | {s['spool_bytes']} "
            f"| {s['spool_age_s']} | {s['dropped']} | {s.get('held', 0)} "
            f"| {'yes' if s['influx_up'] else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run, print and record the results; non-zero when a reading was lost."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration-seconds", type=float, default=3600.0)
    p.add_argument("--sites", type=int, default=2)
    p.add_argument("--meters", type=int, default=500, help="meters per site")
    p.add_argument("--interval-seconds", type=float, default=10.0)
    p.add_argument("--sample-seconds", type=float, default=30.0)
    p.add_argument("--outage-at-seconds", type=float, default=0.0)
    p.add_argument(
        "--outage-seconds",
        type=float,
        default=0.0,
        help="stop InfluxDB this long mid-run (0: no outage)",
    )
    p.add_argument(
        "--spool-max-bytes",
        type=int,
        default=None,
        help="sinks.spool.max_bytes (default: the collector's)",
    )
    p.add_argument("--workdir", default=str(ROOT / "var" / "soak"))
    p.add_argument("--out", default=None, help="append the Markdown results to this file")
    args = p.parse_args(argv)
    # SIGTERM unwinds through the finally blocks: the collector, Mosquitto and InfluxDB
    # started here are stopped too (killed by default, they outlived the run).
    signal.signal(signal.SIGTERM, lambda _s, _f: sys.exit(143))
    summary = run(args)
    text = markdown(summary)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as fh:
            fh.write("\n" + text)
    (Path(args.workdir) / "soak.json").write_text(json.dumps(summary, indent=1))
    return 0 if summary["lost"] == 0 and summary["exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
