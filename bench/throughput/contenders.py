"""The contenders: the limit (mosquitto_sub), bare paho, greendc, mqtt-exporter, Node-RED."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.throughput.common import (
    BENCH,
    EXPORTER_BIN,
    GREENDC_CLI,
    NODE_RED_JS,
    ROOT,
    SITE,
    VENV_PY,
    BenchError,
)
from bench.throughput.influx import StoredProgress, scrape_sum
from bench.throughput.stream import Stream, bench_meters
from tests.support.procfs import Proc
from tests.support.servers import InfluxDB1, Mosquitto, free_port, http_request


@dataclass
class Ctx:
    """What a contender needs to start."""

    broker: Mosquitto
    influx: InfluxDB1
    stream: Stream
    qos: int
    run_id: str
    workdir: Path


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
