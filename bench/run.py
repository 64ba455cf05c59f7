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
import contextlib
import cProfile
import json
import os
import platform
import pstats
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from io import StringIO
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import paho.mqtt.client as mqtt  # noqa: E402

from greendc.collector.mqttio import encode_publish, encode_varint  # noqa: E402
from tests.servers import InfluxDB1, Mosquitto, free_port, http_request  # noqa: E402

BENCH = ROOT / "bench"
WORK = BENCH / ".work"
RESULTS = BENCH / "results"
VENV_PY = ROOT / ".venv" / "bin" / "python"
GREENDC_CLI = ROOT / ".venv" / "bin" / "greendc"
EXPORTER_BIN = WORK / "venv-mqtt-exporter" / "bin" / "mqtt-exporter"
PYSPY_BIN = WORK / "venv-mqtt-exporter" / "bin" / "py-spy"
NODE_RED_JS = WORK / "node-red" / "node_modules" / "node-red" / "red.js"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SITE = "bench"
MEASUREMENT = "greendc_reading"


class BenchError(RuntimeError):
    """A contender could not be started or measured."""


# -- the broker ------------------------------------------------------------------------------
class BenchBroker(Mosquitto):
    """Mosquitto as the issue asks: persistence off, no queue cap, $SYS every second."""

    persistent = False
    extra_config = (
        # $SYS/broker/subscriptions/count tells when a contender has subscribed.
        "sys_interval 1",
        # MQTT 3.1.1 clients get this in-flight window (MQTT 5 clients set their own
        # Receive Maximum); 20, the default, starves a subscriber that acks durably.
        "max_inflight_messages 1000",
    )


class SubscriptionWatch:
    """Follows the broker's $SYS subscription count."""

    def __init__(self, broker: Mosquitto) -> None:
        """Connect and subscribe to $SYS/broker/subscriptions/count."""
        self.count = -1
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-sys")
        self._client.on_message = self._on_message
        self._client.connect(broker.host, broker.port)
        self._client.subscribe("$SYS/broker/subscriptions/count")
        self._client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        with contextlib.suppress(ValueError):
            self.count = int(msg.payload)

    def wait_for(self, subs: int, alive: Callable[[], bool], deadline_seconds: float) -> None:
        """Block until ``subs`` subscriptions besides our own exist."""
        deadline = time.monotonic() + deadline_seconds
        while self.count < subs + 1:
            if not alive():
                raise BenchError("the contender exited before it subscribed")
            if time.monotonic() > deadline:
                raise BenchError(f"no {subs} subscription(s) within {deadline_seconds} s")
            time.sleep(0.05)

    def close(self) -> None:
        """Disconnect."""
        self._client.disconnect()
        self._client.loop_stop()


# -- the stream ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stream:
    """One pre-encoded burst."""

    kind: str  # "single" or "batch50"
    meters: int
    readings: int
    messages: int
    filter: str  # the MQTT filter a generic consumer subscribes to
    items: list[tuple[bytes, bytes]]  # (topic, payload)


def make_stream(kind: str, readings: int, meters: int, batch: int, base_ts: int) -> Stream:
    """Readings over ``meters`` meters, meter-major per round, each meter one per second."""
    per_meter = max(1, readings // meters)
    items: list[tuple[bytes, bytes]] = []
    if kind == "single":
        for k in range(per_meter):
            for m in range(meters):
                power_w = 1000 + (m * 7 + k) % 500 + 0.5
                items.append(
                    (
                        f"greendc/{SITE}/m{m:06d}".encode(),
                        f'{{"ts": {base_ts + k}, "power_w": {power_w}, '
                        f'"energy_wh": {1000000 + m + k * 10}.0}}'.encode(),
                    )
                )
        return Stream(kind, meters, per_meter * meters, len(items), f"greendc/{SITE}/+", items)
    rows: list[str] = []
    topic = f"greendc/{SITE}".encode()
    for k in range(per_meter):
        for m in range(meters):
            power_w = 1000 + (m * 7 + k) % 500 + 0.5
            rows.append(
                f'{{"meter": "m{m:06d}", "ts": {base_ts + k}, "power_w": {power_w}, '
                f'"energy_wh": {1000000 + m + k * 10}.0}}'
            )
            if len(rows) == batch:
                items.append((topic, ("[" + ", ".join(rows) + "]").encode()))
                rows = []
    if rows:
        items.append((topic, ("[" + ", ".join(rows) + "]").encode()))
    return Stream(kind, meters, per_meter * meters, len(items), f"greendc/{SITE}", items)


def encode_connect(client_id: str, keepalive_seconds: int = 600) -> bytes:
    """An MQTT 3.1.1 CONNECT with a clean session."""
    cid = client_id.encode()
    body = (
        b"\x00\x04MQTT\x04\x02"
        + keepalive_seconds.to_bytes(2, "big")
        + len(cid).to_bytes(2, "big")
        + cid
    )
    return b"\x10" + encode_varint(len(body)) + body


class Publisher:
    """Writes a pre-encoded burst from a raw socket: the same load for every contender."""

    CHUNK = 500

    def __init__(self, stream: Stream, qos: int, window: int) -> None:
        """Encode everything up front so publishing costs (almost) no CPU."""
        self.qos = qos
        self.window = window
        self.total = stream.messages
        packets = [
            encode_publish(t, p, qos, (i % 65535) + 1) for i, (t, p) in enumerate(stream.items)
        ]
        self.chunks = [
            (len(packets[i : i + self.CHUNK]), b"".join(packets[i : i + self.CHUNK]))
            for i in range(0, len(packets), self.CHUNK)
        ]
        self.seconds = 0.0
        self.error: BaseException | None = None

    def run(self, host: str, port: int) -> None:
        """Connect, publish everything (QoS 1: windowed on PUBACKs), disconnect."""
        began = time.monotonic()
        try:
            with socket.create_connection((host, port)) as sock:
                sock.sendall(encode_connect(f"bench-pub-{time.time_ns()}"))
                connack = sock.recv(4)
                if len(connack) < 4 or connack[0] != 0x20 or connack[3] != 0:
                    raise BenchError(f"broker refused the publisher: {connack!r}")
                sent = 0
                acked_bytes = 0
                for n, chunk in self.chunks:
                    while self.qos and sent - acked_bytes // 4 > self.window - n:
                        acked_bytes += len(sock.recv(65536))
                    sock.sendall(chunk)
                    sent += n
                while self.qos and acked_bytes // 4 < sent:
                    data = sock.recv(65536)
                    if not data:
                        raise BenchError("broker closed the publisher's connection")
                    acked_bytes += len(data)
                sock.sendall(b"\xe0\x00")
        except BaseException as exc:
            self.error = exc
        self.seconds = time.monotonic() - began


# -- process accounting ----------------------------------------------------------------------
def host_cpu_ticks() -> tuple[int, int]:
    """(all ticks, idle+iowait ticks) over every core, from /proc/stat."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process (all threads), in seconds."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_peak_rss_mib(pid: int) -> float:
    """VmHWM of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Usage:
    """What a consumer process used."""

    cpu_seconds: float
    peak_rss_mib: float


class Proc:
    """A consumer process, reaped with wait4 so its rusage is known when it exits."""

    def __init__(
        self,
        cmd: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log: Path | None = None,
        stdout_pipe: bool = False,
    ) -> None:
        """Start ``cmd`` in its own session."""
        self.log = log
        out: Any = (
            subprocess.PIPE
            if stdout_pipe
            else (log.open("wb") if log is not None else subprocess.DEVNULL)
        )
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT if log is None or stdout_pipe else out,
            start_new_session=True,
        )
        if out not in (subprocess.PIPE, subprocess.DEVNULL):
            out.close()
        self.pid = self.popen.pid
        self.exit_usage: Usage | None = None
        self.ended_at = 0.0

    def exited(self) -> bool:
        """Reap the process if it has exited (keeping its rusage)."""
        if self.exit_usage is not None:
            return True
        pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        if pid == 0:
            return False
        self.ended_at = time.monotonic()
        self.popen.returncode = os.waitstatus_to_exitcode(status)
        self.exit_usage = Usage(ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024)
        return True

    def cpu_seconds(self) -> float:
        """CPU used so far (or in total, once exited)."""
        if self.exit_usage is not None:
            return self.exit_usage.cpu_seconds
        return proc_cpu_seconds(self.pid)

    def usage(self) -> Usage:
        """CPU and peak RSS now (or at exit)."""
        if self.exit_usage is not None:
            return self.exit_usage
        return Usage(proc_cpu_seconds(self.pid), proc_peak_rss_mib(self.pid))

    def stop(self, timeout_seconds: float = 20.0) -> None:
        """SIGTERM, then SIGKILL after a deadline."""
        if self.exited():
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_seconds
        while not self.exited():
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
            time.sleep(0.02)


# -- contenders ------------------------------------------------------------------------------
@dataclass
class Ctx:
    """What a contender needs to start."""

    broker: Mosquitto
    influx: InfluxDB1
    stream: Stream
    qos: int
    run_id: str
    workdir: Path


def influx_count(influx: InfluxDB1, db: str) -> int:
    """Points stored in ``db`` (count of power_w)."""
    answer = influx.query(db, f"SELECT count(power_w) FROM {MEASUREMENT}")
    series = answer["results"][0].get("series")
    return int(series[0]["values"][0][1]) if series else 0


def influx_points_written(influx: InfluxDB1, db: str) -> int:
    """Points influxd has acknowledged into ``db``, from its own write statistics."""
    answer = influx.query(db, "SHOW STATS FOR 'shard'")
    total = 0
    for series in answer["results"][0].get("series", []):
        if series.get("tags", {}).get("database") == db:
            row = dict(zip(series["columns"], series["values"][0], strict=True))
            total += int(row.get("writePointsOk", 0))
    return total


class StoredProgress:
    """Progress of a consumer that writes into influxd, without loading influxd to see it.

    Counting the points with a query scans them: at 200,000 points one count cost influxd
    82 ms of CPU, so counting every 0.1 s took about a third of a core from the run being
    measured (more as the data grew). Progress comes from influxd's write statistics (a
    few ms); the points are counted once, when the statistics say every one was written,
    and that count is what the run reports as verified. ``done_at`` is when the statistics
    first showed them all.
    """

    def __init__(self) -> None:
        self.done_at: float | None = None

    def check(self, influx: InfluxDB1, db: str, want: int, final: bool) -> tuple[bool, int]:
        """(every reading stored, readings stored so far)."""
        if self.done_at is None:
            written = influx_points_written(influx, db)
            if written < want and not final:
                return False, written
            self.done_at = time.monotonic()
        stored = influx_count(influx, db)
        if stored < want:
            self.done_at = None  # written is not stored (a duplicate, say): keep watching
        return stored >= want, stored


def scrape_sum(url: str, metric: str) -> float:
    """Sum of every sample of ``metric`` on a Prometheus text endpoint."""
    status, body = http_request(url, timeout_seconds=30.0)
    if status != 200:
        raise BenchError(f"{url} answered {status}")
    total = 0.0
    prefix = metric.encode()
    for line in body.splitlines():
        if line.startswith(prefix) and line[len(prefix) : len(prefix) + 1] in (b"{", b" "):
            total += float(line.rsplit(b" ", 1)[1])
    return total


class Contender:
    """A consumer of the stream; subclasses start it and observe its progress."""

    name = ""
    streams: tuple[str, ...] = ("single", "batch50")
    subscriptions = 1
    note = ""
    # True for consumers that exit on their own when done (or idle): progress is only known
    # at exit, so the runner must not give up on them for lack of visible progress.
    self_terminating = False

    def __init__(self) -> None:
        """Nothing runs until start()."""
        self.proc: Proc | None = None
        self.stored: StoredProgress | None = None  # set by consumers that write into influxd

    def available(self) -> str | None:
        """None when it can run here, else why not."""
        return None

    def start(self, ctx: Ctx) -> None:
        """Start the consumer."""
        raise NotImplementedError

    def progress(self, ctx: Ctx, final: bool) -> tuple[bool, int]:
        """(done, readings verified so far)."""
        raise NotImplementedError

    def poll_seconds(self) -> float:
        """How often progress() is called."""
        return 0.1

    def finish(self, ctx: Ctx) -> dict[str, Any]:
        """Extra facts about the run, gathered before the process is stopped."""
        return {}


class Limit(Contender):
    """mosquitto_sub -C N > /dev/null."""

    name = "limit (mosquitto_sub)"
    self_terminating = True

    def available(self) -> str | None:
        """mosquitto_sub must be on PATH."""
        return None if shutil.which("mosquitto_sub") else "mosquitto_sub is not installed"

    def start(self, ctx: Ctx) -> None:
        """Exit after exactly the burst's message count."""
        self.proc = Proc(
            [
                "mosquitto_sub",
                "-h",
                ctx.broker.host,
                "-p",
                str(ctx.broker.port),
                "-t",
                ctx.stream.filter,
                "-q",
                str(ctx.qos),
                "-C",
                str(ctx.stream.messages),
                "-W",
                "600",
                "-i",
                f"bench-limit-{ctx.run_id}",
            ]
        )

    def progress(self, ctx: Ctx, final: bool) -> tuple[bool, int]:
        """Done when it exits; it exits with 0 only after N messages."""
        assert self.proc is not None
        if self.proc.exited():
            return True, ctx.stream.readings if self.proc.popen.returncode == 0 else 0
        return False, 0

    def poll_seconds(self) -> float:
        """Exit is cheap to watch."""
        return 0.005


class BarePaho(Contender):
    """paho-mqtt + json.loads, nothing else."""

    name = "bare paho + json.loads"
    self_terminating = True

    def start(self, ctx: Ctx) -> None:
        """Run bench/consumers/paho_bare.py."""
        self.proc = Proc(
            [
                str(VENV_PY),
                str(BENCH / "consumers" / "paho_bare.py"),
                ctx.broker.host,
                str(ctx.broker.port),
                ctx.stream.filter,
                str(ctx.qos),
                str(ctx.stream.readings),
                "10",
            ],
            stdout_pipe=True,
        )
        self._readings = 0

    def progress(self, ctx: Ctx, final: bool) -> tuple[bool, int]:
        """Done when it exits; it prints what it counted."""
        assert self.proc is not None
        if not self.proc.exited():
            return False, 0
        out = self.proc.popen.stdout.read().decode() if self.proc.popen.stdout else ""
        parts = out.split()
        self._readings = int(parts[1]) if len(parts) == 2 else 0
        return True, self._readings

    def poll_seconds(self) -> float:
        """Exit is cheap to watch."""
        return 0.005


def bench_meters(n: int) -> list[dict[str, Any]]:
    """The site's meters for a stream over ``n``: one incomer, a few coolers, the rest IT."""
    out: list[dict[str, Any]] = []
    for m in range(n):
        name = f"m{m:06d}"
        if m == 0:
            out.append({"name": name, "role": "facility"})
        elif m < 10:
            out.append({"name": name, "role": "cooling"})
        else:
            out.append({"name": name, "role": "it", "point": "ups_output"})
    return out


class Greendc(Contender):
    """greendc collect into influxd 1.x, with /metrics on."""

    name = "greendc"

    def __init__(
        self,
        *,
        batch_size: int = 5000,
        flush_interval_seconds: float = 0.25,
        protocol: str = "5",
        configure_meters: bool = True,
    ) -> None:
        """Sink batching as in a production config; MQTT 5 or 3.1.1; meters configured or not.

        With ``configure_meters=False`` every meter is an accepted unknown one: stored and on
        /metrics, but not in any live KPI, which is the job the peers do (and shows what the
        KPIs cost).
        """
        super().__init__()
        self.protocol = protocol
        self.configure_meters = configure_meters
        if protocol != "5":
            self.name = f"greendc (MQTT {protocol})"
        if not configure_meters:
            self.name = "greendc (meters not configured: no live KPIs)"
        self.batch_size = batch_size
        self.flush_interval_seconds = flush_interval_seconds
        self.mode = ""
        self.metrics_url = ""
        self.db = ""

    def config(self, ctx: Ctx, metrics_port: int) -> dict[str, Any]:
        """The agent's config for this run (JSON, which is YAML)."""
        return {
            "mqtt": {
                "url": ctx.broker.url,
                "client_id": f"bench-greendc-{ctx.run_id}",
                "protocol": self.protocol,
                "qos": ctx.qos,
                "clean_start": True,
                "session_expiry_seconds": 0,
                "max_inflight": 1000,
            },
            "validation": {
                "unknown_meters": "accept",
                "max_meters": 1_000_000,
                "max_past_seconds": 7 * 86400,
            },
            "sinks": {
                "influxdb_v1": {"url": ctx.influx.url, "db": self.db},
                "batch_size": self.batch_size,
                "flush_interval_seconds": self.flush_interval_seconds,
                "max_queue_batches": 1024,
                "spool": {"dir": str(ctx.workdir / "spool")},
            },
            "metrics": {
                "listen": "127.0.0.1",
                "port": metrics_port,
                "default_expiry_seconds": 86400,
            },
            "sites": [
                {
                    "name": SITE,
                    "grid_zone": "SG",
                    "installed_it_kw": 1000,
                    "pue_category": 1,
                    # Every meter configured, as in production: each reading also feeds the
                    # live KPIs (PUE, energy counters) exported on /metrics.
                    "meters": bench_meters(ctx.stream.meters) if self.configure_meters else [],
                }
            ],
            "log_level": "WARNING",
        }

    def start(self, ctx: Ctx) -> None:
        """``greendc collect``; if the CLI cannot start, the same agent via the driver."""
        self.db = f"greendc_{ctx.run_id}"
        self.stored = StoredProgress()
        ctx.influx.create_database(self.db)
        port = free_port()
        self.metrics_url = f"http://127.0.0.1:{port}/metrics"
        path = ctx.workdir / "greendc.yaml"
        path.write_text(json.dumps(self.config(ctx, port), indent=2))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        for key in list(env):
            if key.startswith("GREENDC_"):
                del env[key]
        attempts = [
            ("greendc collect", [str(GREENDC_CLI), "collect", "--config", str(path)]),
            (
                "bench/consumers/greendc_driver.py (CLI failed)",
                [str(VENV_PY), str(BENCH / "consumers" / "greendc_driver.py"), str(path)],
            ),
        ]
        for mode, cmd in attempts:
            log = ctx.workdir / "greendc.log"
            self.proc = Proc(cmd, env=env, cwd=ctx.workdir, log=log)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not self.proc.exited():
                with contextlib.suppress(OSError):
                    if http_request(self.metrics_url, timeout_seconds=2.0)[0] == 200:
                        self.mode = mode
                        return
                time.sleep(0.05)
            tail = log.read_text(errors="replace")[-1500:]
            self.proc.stop()
            print(f"  {mode} did not start:\n{tail}", file=sys.stderr)
        raise BenchError("greendc did not start (see above)")

    def progress(self, ctx: Ctx, final: bool) -> tuple[bool, int]:
        """Stored in influxd; /metrics is read only when the store is complete (it costs)."""
        assert self.stored is not None  # start() ran
        _all, stored = self.stored.check(ctx.influx, self.db, ctx.stream.readings, final)
        if stored >= ctx.stream.readings or final:
            accepted = scrape_sum(self.metrics_url, "greendc_agent_readings_accepted_total")
            self.accepted = int(accepted)
            return accepted >= ctx.stream.readings and stored >= ctx.stream.readings, stored
        return False, stored

    def finish(self, ctx: Ctx) -> dict[str, Any]:
        """How it ran, and what /metrics said."""
        return {"mode": self.mode, "accepted_on_metrics": getattr(self, "accepted", None)}


class MqttExporter(Contender):
    """mqtt-exporter 1.12.1: MQTT -> Prometheus gauges."""

    name = "mqtt-exporter 1.12.1"
    streams = ("single",)
    note = "subscribes at QoS 0 whatever is published; no batch (array) support"

    def available(self) -> str | None:
        """Installed by bench/peers/install.sh."""
        return None if EXPORTER_BIN.exists() else "not installed (bench/peers/install.sh failed)"

    def start(self, ctx: Ctx) -> None:
        """Configured by environment variables only."""
        port = free_port()
        self.url = f"http://127.0.0.1:{port}/metrics"
        env = {
            **os.environ,
            "MQTT_ADDRESS": ctx.broker.host,
            "MQTT_PORT": str(ctx.broker.port),
            "MQTT_TOPIC": ctx.stream.filter,
            "PROMETHEUS_PORT": str(port),
            "PROMETHEUS_ADDRESS": "127.0.0.1",
            "LOG_LEVEL": "WARNING",
            "MQTT_CLIENT_ID": f"bench-exporter-{ctx.run_id}",
        }
        self.proc = Proc([str(EXPORTER_BIN)], env=env, log=ctx.workdir / "exporter.log")

    def progress(self, ctx: Ctx, final: bool) -> tuple[bool, int]:
        """Its own counter of received messages."""
        try:
            seen = int(scrape_sum(self.url, "mqtt_message_total"))
        except OSError:
            return False, 0
        return seen >= ctx.stream.messages, seen

    def poll_seconds(self) -> float:
        """Each scrape costs the exporter CPU: poll gently."""
        return 0.5


NODE_RED_SETTINGS = """module.exports = {
    flowFile: 'flows.json',
    credentialSecret: false,
    uiHost: '127.0.0.1',
    httpAdminRoot: false,
    httpNodeRoot: false,
    logging: { console: { level: 'warn' } },
    editorTheme: { tours: false },
};
"""

SINGLE_FN = """const p = msg.payload; const parts = msg.topic.split('/');
msg.payload = {measurement: 'greendc_reading', tags: {site: parts[1], meter: parts[2]},
  fields: {power_w: p.power_w, energy_wh: p.energy_wh}, timestamp: new Date(p.ts * 1000)};
return msg;"""

BATCH_FN = """const site = msg.topic.split('/')[1];
return [msg.payload.map(p => ({payload: {measurement: 'greendc_reading',
  tags: {site: site, meter: p.meter}, fields: {power_w: p.power_w, energy_wh: p.energy_wh},
  timestamp: new Date(p.ts * 1000)}}))];"""


class NodeRed(Contender):
    """Node-RED 4 + node-red-contrib-influxdb 0.7.0, batched with a join node."""

    name = "node-red (join 5000 -> influxdb batch)"

    def available(self) -> str | None:
        """Installed by bench/peers/install.sh; needs node."""
        if not shutil.which("node"):
            return "node is not installed"
        return None if NODE_RED_JS.exists() else "not installed (bench/peers/install.sh failed)"

    def flow(self, ctx: Ctx) -> list[dict[str, Any]]:
        """mqtt in -> function -> join -> influxdb batch."""
        fn = SINGLE_FN if ctx.stream.kind == "single" else BATCH_FN
        return [
            {"id": "t1", "type": "tab", "label": "bench"},
            {
                "id": "b1",
                "type": "mqtt-broker",
                "broker": ctx.broker.host,
                "port": str(ctx.broker.port),
                "clientid": f"bench-nodered-{ctx.run_id}",
                "usetls": False,
                "protocolVersion": "4",
                "keepalive": "60",
                "cleansession": True,
                "autoConnect": True,
            },
            {
                "id": "c1",
                "type": "influxdb",
                "hostname": ctx.influx.host,
                "port": str(ctx.influx.port),
                "protocol": "http",
                "database": self.db,
                "name": "",
                "usetls": False,
                "tls": "",
                "influxdbVersion": "1.x",
            },
            {
                "id": "m1",
                "type": "mqtt in",
                "z": "t1",
                "topic": ctx.stream.filter,
                "qos": str(ctx.qos),
                "datatype": "json",
                "broker": "b1",
                "nl": False,
                "rap": False,
                "inputs": 0,
                "x": 100,
                "y": 100,
                "wires": [["f1"]],
            },
            {
                "id": "f1",
                "type": "function",
                "z": "t1",
                "func": fn,
                "outputs": 1,
                "x": 300,
                "y": 100,
                "wires": [["j1"]],
            },
            {
                "id": "j1",
                "type": "join",
                "z": "t1",
                "mode": "custom",
                "build": "array",
                "property": "payload",
                "propertyType": "msg",
                "key": "topic",
                "joiner": "\\n",
                "joinerType": "str",
                "accumulate": False,
                "timeout": "0.25",
                "count": "5000",
                "reduceRight": False,
                "x": 500,
                "y": 100,
                "wires": [["i1"]],
            },
            {
                "id": "i1",
                "type": "influxdb batch",
                "z": "t1",
                "influxdb": "c1",
                "precision": "ms",
                "retentionPolicy": "",
                "name": "",
                "x": 700,
                "y": 100,
                "wires": [],
            },
        ]

    def start(self, ctx: Ctx) -> None:
        """A fresh user directory per run."""
        self.db = f"nodered_{ctx.run_id}"
        self.stored = StoredProgress()
        ctx.influx.create_database(self.db)
        user_dir = ctx.workdir / "node-red"
        user_dir.mkdir()
        (user_dir / "settings.js").write_text(NODE_RED_SETTINGS)
        (user_dir / "flows.json").write_text(json.dumps(self.flow(ctx)))
        self.proc = Proc(
            [
                "node",
                str(NODE_RED_JS),
                "--userDir",
                str(user_dir),
                "--settings",
                str(user_dir / "settings.js"),
                "--port",
                str(free_port()),
            ],
            log=ctx.workdir / "node-red.log",
        )

    def progress(self, ctx: Ctx, final: bool) -> tuple[bool, int]:
        """Stored in influxd."""
        assert self.stored is not None  # start() ran
        return self.stored.check(ctx.influx, self.db, ctx.stream.readings, final)


# -- one measurement ---------------------------------------------------------------------
@dataclass
class Result:
    """One contender on one stream at one QoS."""

    contender: str
    stream: str
    qos: int
    meters: int
    messages: int
    readings: int
    status: str = "ok"
    seconds: float = 0.0
    publish_seconds: float = 0.0
    messages_per_s: float = 0.0
    readings_per_s: float = 0.0
    cpu_seconds: float = 0.0
    cpu_us_per_message: float = 0.0
    cpu_us_per_reading: float = 0.0
    cpu_s_per_100k_readings: float = 0.0
    peak_rss_mib: float = 0.0
    verified: int = 0
    lost: int | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def measure(
    contender: Contender,
    stream: Stream,
    qos: int,
    influx: InfluxDB1,
    args: Any,
    *,
    keep: Callable[[Contender, Ctx], dict[str, Any]] | None = None,
) -> Result:
    """Run one contender against one burst on a fresh broker."""
    res = Result(
        contender.name,
        stream.kind,
        qos,
        stream.meters,
        stream.messages,
        stream.readings,
        note=contender.note,
    )
    why = contender.available()
    if why is not None:
        res.status = f"skipped: {why}"
        return res
    run_id = f"{stream.kind}_q{qos}_{stream.meters}_{time.time_ns() % 10**9}"
    workdir = WORK / "runs" / run_id
    workdir.mkdir(parents=True)
    publisher = Publisher(stream, qos, args.qos1_window)
    with BenchBroker(workdir / "broker") as broker:
        ctx = Ctx(broker, influx, stream, qos, run_id, workdir)
        watch = SubscriptionWatch(broker)
        try:
            contender.start(ctx)
            proc = contender.proc
            assert proc is not None
            watch.wait_for(contender.subscriptions, lambda: not proc.exited(), 60)
            cpu0 = proc.cpu_seconds()
            broker_cpu0 = proc_cpu_seconds(broker.pid or 0)
            host0 = host_cpu_ticks()
            t0 = time.monotonic()
            thread = threading.Thread(target=publisher.run, args=(broker.host, broker.port))
            thread.start()
            done, count = False, 0
            last_change, last_count = t0, -1
            end = t0
            while True:
                done, count = contender.progress(ctx, final=False)
                now = time.monotonic()
                if done:
                    stored = contender.stored
                    if proc.exit_usage is not None:
                        end = proc.ended_at
                    elif stored is not None and stored.done_at is not None:
                        end = stored.done_at
                    else:
                        end = now
                    break
                if count != last_count:
                    last_change, last_count = now, count
                    end = now
                idle_s = 600.0 if contender.self_terminating else args.idle_seconds
                if not thread.is_alive() and now - last_change > idle_s:
                    done, count = contender.progress(ctx, final=True)
                    res.status = "incomplete (idle timeout)"
                    break
                time.sleep(contender.poll_seconds())
            thread.join()
            host1 = host_cpu_ticks()
            all_ticks = max(1, host1[0] - host0[0])
            # Other work on the machine skews wall-clock rates; CPU per message is robust.
            res.extra["host_busy_share"] = round(1 - (host1[1] - host0[1]) / all_ticks, 3)
            res.extra["broker_cpu_seconds"] = round(
                proc_cpu_seconds(broker.pid or 0) - broker_cpu0, 2
            )
            if publisher.error is not None:
                res.status = f"publisher failed: {publisher.error!r}"
            res.extra.update(contender.finish(ctx))
            # Before keep(): what it does (timing /metrics scrapes) is not the burst's cost.
            usage = proc.usage()
            if keep is not None:
                res.extra.update(keep(contender, ctx))
            res.seconds = end - t0
            res.publish_seconds = publisher.seconds
            res.cpu_seconds = usage.cpu_seconds - cpu0
            res.peak_rss_mib = usage.peak_rss_mib
            res.verified = count
            res.lost = max(0, stream.readings - count)
            if res.seconds > 0:
                res.messages_per_s = (
                    stream.messages * min(1.0, count / stream.readings) / (res.seconds)
                )
                res.readings_per_s = count / res.seconds
            if count:
                res.cpu_us_per_message = (
                    res.cpu_seconds / (stream.messages * count / stream.readings) * 1e6
                )
                res.cpu_us_per_reading = res.cpu_seconds / count * 1e6
                res.cpu_s_per_100k_readings = res.cpu_seconds / count * 100_000
        except BenchError as exc:
            res.status = f"failed: {exc}"
        finally:
            watch.close()
            if contender.proc is not None:
                contender.proc.stop()
    if res.extra.get("host_busy_share") is not None and contender.proc is not None:
        # busy core-seconds not spent by the consumer or the broker: everything else
        cores = os.cpu_count() or 1
        res.extra["other_cpu_seconds"] = round(
            res.extra["host_busy_share"] * cores * res.seconds
            - res.cpu_seconds
            - res.extra.get("broker_cpu_seconds", 0.0),
            1,
        )
    if not args.keep_work:
        shutil.rmtree(workdir, ignore_errors=True)
    with contextlib.suppress(Exception):
        for db in (getattr(contender, "db", ""),):
            if db:
                influx.drop_database(db)
    return res


# -- scrape, growth, profile -------------------------------------------------------------
def time_scrape(url: str, repeats: int = 3) -> dict[str, Any]:
    """Wall time of GET /metrics, plain and gzip."""
    out: dict[str, Any] = {}
    for label, headers in (("plain", {}), ("gzip", {"Accept-Encoding": "gzip"})):
        times = []
        size = 0
        body = b""
        for _ in range(repeats):
            began = time.perf_counter()
            status, body = http_request(url, headers=headers, timeout_seconds=120.0)
            times.append(time.perf_counter() - began)
            if status != 200:
                raise BenchError(f"scrape answered {status}")
            size = len(body)
        out[label] = {"best_s": min(times), "median_s": statistics.median(times), "bytes": size}
        if label == "plain":
            out["series"] = sum(1 for ln in body.splitlines() if ln and not ln.startswith(b"#"))
            out["meter_power_series"] = sum(
                1
                for ln in body.splitlines()
                if b'meter="m' in ln and b"power" in ln and not ln.startswith(b"#")
            )
    return out


def py_spy_profile(pid: int, seconds: float, out: Path) -> Proc | None:
    """Start py-spy recording the agent (raw collapsed stacks)."""
    if not PYSPY_BIN.exists():
        return None
    return Proc(
        [
            str(PYSPY_BIN),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--threads",
            "--output",
            str(out),
            "--nonblocking",
        ],
        log=out.with_suffix(".log"),
    )


def summarise_collapsed(path: Path, top: int = 25) -> dict[str, list[tuple[str, float]]]:
    """Self and inclusive sample shares per function from py-spy's raw output."""
    self_counts: dict[str, int] = {}
    incl_counts: dict[str, int] = {}
    thread_counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n_text = line.rpartition(" ")
        if not stack:
            continue
        n = int(n_text)
        total += n
        frames = stack.split(";")
        thread_counts[frames[0]] = thread_counts.get(frames[0], 0) + n
        funcs = [re.sub(r":\d+\)", ")", f) for f in frames[1:]]
        if funcs:
            self_counts[funcs[-1]] = self_counts.get(funcs[-1], 0) + n
        for f in set(funcs):
            incl_counts[f] = incl_counts.get(f, 0) + n

    def share(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(k, v / total) for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    return {
        "self": share(self_counts),
        "inclusive": share(incl_counts),
        "threads": share(thread_counts),
        "samples": [("total", float(total))],
    }


def cprofile_handle(stream: Stream) -> dict[str, Any]:
    """Agent.handle() alone (no MQTT, no sink I/O), timed and profiled in this process."""
    from greendc.collector.agent import Agent
    from greendc.config import parse_config

    def agent() -> Any:
        cfg = {
            "validation": {"unknown_meters": "accept", "max_meters": 1_000_000},
            "sites": [
                {
                    "name": SITE,
                    "grid_zone": "SG",
                    "installed_it_kw": 1000,
                    "pue_category": 1,
                    "meters": bench_meters(stream.meters),
                }
            ],
            "sinks": {"spool": {"dir": str(WORK / "spool-profile")}},
        }
        a = Agent(parse_config(cfg, env={}), sinks=[])
        with contextlib.suppress(ImportError):
            from greendc.collector.live import attach_live

            attach_live(a, a.settings)
        return a

    items = [(t.decode(), p) for t, p in stream.items]
    a = agent()
    began = time.process_time()
    for t, p in items:
        a.handle(t, p)
    plain_s = time.process_time() - began
    a = agent()
    prof = cProfile.Profile()
    prof.enable()
    for t, p in items:
        a.handle(t, p)
    prof.disable()
    text = StringIO()
    pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(20)
    return {
        "kind": stream.kind,
        "messages": stream.messages,
        "readings": stream.readings,
        "cpu_us_per_message": plain_s / stream.messages * 1e6,
        "cpu_us_per_reading": plain_s / stream.readings * 1e6,
        "pstats_tottime": text.getvalue(),
    }


# -- report --------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        return (
            (out.stdout or out.stderr).strip().splitlines()[0]
            if (out.stdout or out.stderr)
            else "?"
        )

    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_gib, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "mosquitto": version(["mosquitto", "-h"])
        if shutil.which("mosquitto")
        else version(["/usr/sbin/mosquitto", "-h"]),
        "influxd": version(["influxd", "version"]),
        "node": version(["node", "--version"]),
    }


def _f(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}" if x else "-"


def _busy(r: Result) -> str:
    share = r.extra.get("host_busy_share")
    return "-" if share is None else f"{share:.0%}"


def render(data: dict[str, Any]) -> str:
    """The markdown report."""
    m = data["machine"]
    lines = [
        "# greendc throughput benchmark",
        "",
        f"Run {data['date']} on {m['nproc']} x {m['cpu_model']}, {m['memory_gib']} GiB, "
        f"Python {m['python']}, {m['mosquitto']}, influxd {m['influxd']}, node {m['node']}.",
        f"Command: `{data['command']}`. Load average at start: "
        f"{' '.join(data.get('loadavg_at_start', []))}.",
        "",
        "Ratios within one run are the result; absolute figures vary about ±25 % run to run. "
        "'host busy' is the share of all cores busy during the burst (consumer, broker, "
        "influxd, and anything else on the machine): above about 60 % on 2 cores the "
        "consumer was competing for CPU and its wall-clock rate understates it, while CPU "
        "per message stays comparable.",
        "",
    ]
    runs = [Result(**r) for r in data["runs"]]
    for kind in ("single", "batch50"):
        for qos in (0, 1):
            group = [r for r in runs if r.stream == kind and r.qos == qos]
            if not group:
                continue
            g0 = group[0]
            lines += [
                f"## {'single-reading messages' if kind == 'single' else 'gateway batches of 50'}"
                f", QoS {qos}: {g0.messages:,} messages, {g0.readings:,} readings, "
                f"{g0.meters:,} meters",
                "",
                "| contender | msg/s | readings/s | CPU µs/msg | CPU µs/reading "
                "| CPU s/100k readings | peak RSS MiB | verified | lost | rate vs paho "
                "| CPU/msg vs paho | host busy | status |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            ]
            paho = next((r for r in group if r.contender.startswith("bare paho")), None)
            for r in group:
                rate = (
                    f"{r.readings_per_s / paho.readings_per_s:.2f}x"
                    if paho and paho.readings_per_s and r.readings_per_s
                    else "-"
                )
                cpu = (
                    f"{r.cpu_us_per_message / paho.cpu_us_per_message:.2f}x"
                    if paho and paho.cpu_us_per_message and r.cpu_us_per_message
                    else "-"
                )
                status = r.status + (f" ({r.note})" if r.note else "")
                lines.append(
                    f"| {r.contender} | {_f(r.messages_per_s)} | {_f(r.readings_per_s)} "
                    f"| {_f(r.cpu_us_per_message, 1)} | {_f(r.cpu_us_per_reading, 2)} "
                    f"| {_f(r.cpu_s_per_100k_readings, 2)} | {_f(r.peak_rss_mib, 1)} "
                    f"| {r.verified:,} | {'-' if r.lost is None else f'{r.lost:,}'} "
                    f"| {rate} | {cpu} | {_busy(r)} | {status} |"
                )
            lines.append("")
    if data.get("growth"):
        lines += [
            "## Cost growth: greendc, gateway batches of 50, QoS 0",
            "",
            "| distinct meters | readings | readings/s | CPU µs/reading | peak RSS MiB | lost "
            "| host busy | status |",
            "|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for r in (Result(**g) for g in data["growth"]):
            lines.append(
                f"| {r.meters:,} | {r.readings:,} | {_f(r.readings_per_s)} "
                f"| {_f(r.cpu_us_per_reading, 2)} | {_f(r.peak_rss_mib, 1)} "
                f"| {'-' if r.lost is None else f'{r.lost:,}'} | {_busy(r)} | {r.status} |"
            )
        lines.append("")
    sc = data.get("scrape")
    if sc:
        lines += [
            f"## /metrics scrape with {sc.get('meters', 0):,} meters",
            "",
            f"{sc.get('series', 0):,} samples in the exposition "
            f"({sc.get('meter_power_series', 0):,} per-meter power series).",
            "",
            "| encoding | best s | median s | bytes |",
            "|---|---:|---:|---:|",
        ]
        for enc in ("plain", "gzip"):
            if enc in sc:
                e = sc[enc]
                lines.append(
                    f"| {enc} | {e['best_s']:.3f} | {e['median_s']:.3f} | {e['bytes']:,} |"
                )
        lines.append("")
    if data.get("targets"):
        lines += [
            "## Targets (issue 9, point 2)",
            "",
            "| target | measured | met |",
            "|---|---|---|",
        ]
        for t in data["targets"]:
            lines.append(
                f"| {t['target']} | {t['measured']} | "
                f"{'yes' if t['met'] else ('no' if t['met'] is False else 'n/a')} |"
            )
        lines.append("")
    prof = data.get("handle_profile")
    if prof:
        lines += [
            "## Agent.handle() alone (no MQTT, no sink I/O)",
            "",
            "| stream | CPU µs/message | CPU µs/reading |",
            "|---|---:|---:|",
        ]
        for p in prof:
            lines.append(
                f"| {p['kind']} | {p['cpu_us_per_message']:.1f} | {p['cpu_us_per_reading']:.2f} |"
            )
        lines.append("")
    spy = data.get("py_spy")
    if spy:
        lines += [
            "## py-spy: greendc under single-message QoS 0 load (self time, all threads)",
            "",
            "| share | function |",
            "|---:|---|",
        ]
        for name, share in spy["self"][:20]:
            lines.append(f"| {share:.1%} | `{name}` |")
        lines += ["", "| share (inclusive) | function |", "|---:|---|"]
        for name, share in spy["inclusive"][:20]:
            lines.append(f"| {share:.1%} | `{name}` |")
        lines.append("")
    return "\n".join(lines)


def targets(
    runs: list[Result], growth: list[Result], scrape: dict[str, Any]
) -> list[dict[str, Any]]:
    """Issue 9's targets against this run."""
    out: list[dict[str, Any]] = []

    def get(name: str, kind: str, qos: int) -> Result | None:
        return next(
            (
                r
                for r in runs
                if r.contender.startswith(name)
                and r.stream == kind
                and r.qos == qos
                and r.readings_per_s
            ),
            None,
        )

    def exact(name: str, kind: str, qos: int) -> Result | None:
        return next(
            (
                r
                for r in runs
                if r.contender == name and r.stream == kind and r.qos == qos and r.readings_per_s
            ),
            None,
        )

    variants = [("greendc", "MQTT 5"), ("greendc (MQTT 3.1.1)", "MQTT 3.1.1")]
    for qos in (0, 1):
        for gname, proto in variants:
            tag = f", {proto}"
            g, p = exact(gname, "single", qos), get("bare paho", "single", qos)
            e, n = get("mqtt-exporter", "single", qos), get("node-red", "single", qos)
            if g and p:
                ratio = g.readings_per_s / p.readings_per_s
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: rate >= 0.8x bare paho",
                        "measured": f"{ratio:.2f}x",
                        "met": ratio >= 0.8,
                    }
                )
            if g:
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: CPU <= 60 µs/message",
                        "measured": f"{g.cpu_us_per_message:.1f} µs",
                        "met": g.cpu_us_per_message <= 60,
                    }
                )
            if g and e:
                ratio = g.readings_per_s / e.readings_per_s
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: rate >= 2x mqtt-exporter",
                        "measured": f"{ratio:.2f}x",
                        "met": ratio >= 2,
                    }
                )
            if g and n:
                ok = (
                    g.readings_per_s >= n.readings_per_s
                    and g.cpu_seconds < n.cpu_seconds
                    and g.peak_rss_mib <= n.peak_rss_mib / 5
                )
                out.append(
                    {
                        "target": f"single, QoS {qos}{tag}: >= Node-RED rate, "
                        "less CPU, <= 1/5 its memory",
                        "measured": f"rate {g.readings_per_s / n.readings_per_s:.2f}x, CPU "
                        f"{g.cpu_seconds / n.cpu_seconds:.2f}x, RSS "
                        f"{g.peak_rss_mib:.0f} vs {n.peak_rss_mib:.0f} MiB",
                        "met": ok,
                    }
                )
            b = exact(gname, "batch50", qos)
            if b:
                out.append(
                    {
                        "target": f"batch50, QoS {qos}{tag}: >= 100,000 readings/s",
                        "measured": f"{b.readings_per_s:,.0f}/s",
                        "met": b.readings_per_s >= 1e5,
                    }
                )
                out.append(
                    {
                        "target": f"batch50, QoS {qos}{tag}: CPU <= 8 µs/reading",
                        "measured": f"{b.cpu_us_per_reading:.2f} µs",
                        "met": b.cpu_us_per_reading <= 8,
                    }
                )
    mine = [r for r in runs + growth if r.contender == "greendc" and r.lost is not None]
    if mine:
        lost = sum(r.lost or 0 for r in mine)
        out.append(
            {
                "target": "zero readings lost in every burst (greendc)",
                "measured": f"{lost:,} lost over {len(mine)} runs",
                "met": lost == 0,
            }
        )
    if scrape.get("plain"):
        best = scrape["plain"]["best_s"]
        out.append(
            {
                "target": f"/metrics scrape of {scrape.get('meters', 0):,} meters < 1 s",
                "measured": f"{best:.3f} s plain, {scrape['gzip']['best_s']:.3f} s gzip",
                "met": best < 1.0,
            }
        )
    return out


# -- main ----------------------------------------------------------------------------------
def contenders(names: set[str]) -> Iterator[Callable[[], Contender]]:
    """Factories of the contenders selected with --only (all by default)."""
    table: dict[str, Callable[[], Contender]] = {
        "limit": Limit,
        "paho": BarePaho,
        "greendc": Greendc,
        "greendc-311": lambda: Greendc(protocol="3.1.1"),
        "greendc-nokpi": lambda: Greendc(configure_meters=False),
        "mqtt-exporter": MqttExporter,
        "node-red": NodeRed,
    }
    for key, make in table.items():
        if not names or key in names:
            yield make


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
        "machine": machine(),
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


def run_py_spy(stream: Stream, influx: InfluxDB1, args: Any) -> dict[str, Any] | None:
    """Record greendc with py-spy during a single-message QoS 0 burst."""
    if not PYSPY_BIN.exists():
        return None
    raw = WORK / "py-spy.raw.txt"
    raw.unlink(missing_ok=True)
    spy: list[Proc] = []

    class Spied(Greendc):
        def start(self, ctx: Ctx) -> None:
            super().start(ctx)
            assert self.proc is not None
            p = py_spy_profile(self.proc.pid, 600, raw)
            if p is not None:
                spy.append(p)

        def finish(self, ctx: Ctx) -> dict[str, Any]:
            for p in spy:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGINT)
                deadline = time.monotonic() + 30
                while not p.exited() and time.monotonic() < deadline:
                    time.sleep(0.05)
            return super().finish(ctx)

    r = measure(Spied(), stream, 0, influx, args)
    if not raw.exists():
        return {"status": r.status, "self": [], "inclusive": []}
    summary: dict[str, Any] = dict(summarise_collapsed(raw))
    summary["status"] = r.status
    summary["readings_per_s_under_profiler"] = r.readings_per_s
    shutil.copy(raw, RESULTS / "py-spy-greendc-single-q0.txt")
    return summary


if __name__ == "__main__":
    sys.exit(main())
