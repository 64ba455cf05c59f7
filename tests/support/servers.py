"""Real servers for integration tests: Mosquitto, InfluxDB 1.x, VictoriaMetrics, Prometheus.

Each server runs the Debian binary on a free loopback port with its configuration and data
under its own temporary directory, in its own process group. When ``GREENDC_TEST_RUNDIR`` is
set (scripts/test.sh sets it), the server's PID is written there so the test command can kill
it by PID even if pytest itself dies. Readiness is polled with a deadline, never slept for.

    with Mosquitto() as broker:
        ...  # broker.host, broker.port, broker.url
        broker.restart()  # same port, same persistence file
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import paho.mqtt.client as mqtt

LOOPBACK = "127.0.0.1"
RUNDIR_ENV = "GREENDC_TEST_RUNDIR"

# Requests to loopback servers must never go through a proxy taken from the environment.
_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ServerError(RuntimeError):
    """A test server could not be found, started or queried."""


class ServerNotInstalled(ServerError):
    """The server's Debian binary is not on PATH."""


def free_port() -> int:
    """Return a TCP port on the loopback interface that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def http_request(
    url: str,
    *,
    data: bytes | None = None,
    method: str | None = None,
    headers: dict[str, str] | None = None,
    timeout_seconds: float = 10.0,
) -> tuple[int, bytes]:
    """Send one HTTP request without any proxy; return (status, body), also for 4xx/5xx."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with _HTTP.open(request, timeout=timeout_seconds) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return int(exc.code), bytes(exc.read())


def _http_json(url: str, *, data: bytes | None = None, method: str | None = None) -> Any:
    status, body = http_request(url, data=data, method=method)
    if status >= 300:
        raise ServerError(f"{method or 'GET'} {url} answered {status}: {body[:500]!r}")
    return json.loads(body)


class Server:
    """Common lifecycle of a real server process on a free loopback port."""

    name = "server"
    binary = ""
    startup_deadline_seconds = 30.0
    stop_deadline_seconds = 15.0

    def __init__(self, workdir: Path | None = None) -> None:
        """Prepare (but do not start) the server; its files live under ``workdir``."""
        # mosquitto is in /usr/sbin, which is not on an ordinary user's PATH on Debian.
        search_path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
        executable = shutil.which(self.binary, path=search_path)
        if executable is None:
            raise ServerNotInstalled(
                f"{self.binary!r} ({self.name}) is not installed; run `sudo scripts/setup.sh` "
                "(as root it installs the Debian servers the integration tests need)"
            )
        self.executable = executable
        self._own_workdir = workdir is None
        rundir = os.environ.get(RUNDIR_ENV) or None
        # Under the run directory, scripts/test.sh removes what a killed pytest left behind.
        self.workdir = (
            Path(tempfile.mkdtemp(prefix=f"greendc-{self.name}-", dir=rundir))
            if workdir is None
            else workdir
        )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path = self.workdir / f"{self.name}.log"
        self.last_startup_seconds = 0.0
        self._pid_file = (
            Path(rundir) if rundir else self.workdir
        ) / f"{self.name}-{self._port}.pid"

    # -- public properties -------------------------------------------------------------

    @property
    def host(self) -> str:
        """The loopback address the server listens on."""
        return LOOPBACK

    @property
    def port(self) -> int:
        """The server's port; unchanged across restarts."""
        return self._port

    @property
    def url(self) -> str:
        """The base URL clients use to reach the server."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The PID of the running process, or None when stopped."""
        return None if self._process is None else self._process.pid

    @property
    def pid_file(self) -> Path:
        """Where the PID is written while running: $GREENDC_TEST_RUNDIR if set, else workdir."""
        return self._pid_file

    @property
    def running(self) -> bool:
        """True while the server process is alive."""
        return self._process is not None and self._process.poll() is None

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and return once it answers its readiness check."""
        if self.running:
            return self
        self._write_config()
        began = time.monotonic()
        with self._log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self._command(),
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: Ctrl-C in pytest does not hit it
            )
        self._write_pid_file()
        try:
            self._wait_ready(began + self.startup_deadline_seconds)
        except BaseException:
            self.stop()
            raise
        self.last_startup_seconds = time.monotonic() - began
        return self

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGTERM (or SIGKILL when ``kill``), SIGKILL after a deadline."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=self.stop_deadline_seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=self.stop_deadline_seconds)
        self._process = None
        self._pid_file.unlink(missing_ok=True)

    def restart(self, *, kill: bool = False) -> Self:
        """Stop and start again on the same port with the same data directory."""
        self.stop(kill=kill)
        return self.start()

    def close(self) -> None:
        """Stop the server and remove its temporary directory if this object created it."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def log_tail(self, max_chars: int = 3000) -> str:
        """The end of the server's combined stdout/stderr, for error messages."""
        try:
            return self._log_path.read_text(errors="replace")[-max_chars:]
        except OSError:
            return ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- for subclasses ----------------------------------------------------------------

    def _command(self) -> list[str]:
        raise NotImplementedError

    def _write_config(self) -> None:
        """Write configuration files into the work directory (before every start)."""

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # -- internals ---------------------------------------------------------------------

    def _write_pid_file(self) -> None:
        if self._process is not None:
            self._pid_file.write_text(f"{self._process.pid}\n")

    def _wait_ready(self, deadline: float) -> None:
        last_error: BaseException | None = None
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                code = None if self._process is None else self._process.returncode
                raise ServerError(
                    f"{self.name} exited with code {code} before it was ready; "
                    f"log:\n{self.log_tail()}"
                )
            try:
                if self._is_ready():
                    return
            except (OSError, ServerError) as exc:
                last_error = exc
            time.sleep(0.05)
        raise ServerError(
            f"{self.name} on port {self.port} not ready within "
            f"{self.startup_deadline_seconds} s (last error: {last_error!r}); "
            f"log:\n{self.log_tail()}"
        )

    def _http_ok(self, path: str, expected_status: int = 200) -> bool:
        status, _ = http_request(self.url + path, timeout_seconds=2.0)
        return status == expected_status


class Mosquitto(Server):
    """Eclipse Mosquitto 2.x with persistence and no queue cap (QoS 1 is never dropped)."""

    name = "mosquitto"
    binary = "mosquitto"

    @property
    def url(self) -> str:
        """The broker's mqtt:// URL."""
        return f"mqtt://{self.host}:{self.port}"

    @property
    def persistence_dir(self) -> Path:
        """Where the broker keeps sessions and queued messages across restarts."""
        return self.workdir / "persistence"

    # Subclasses (the benchmarks' brokers) turn persistence off and add settings.
    persistent = True
    extra_config: tuple[str, ...] = ()

    def _write_config(self) -> None:
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true"]
        if self.persistent:
            self.persistence_dir.mkdir(exist_ok=True)
            # mosquitto requires the trailing slash on a directory location.
            lines += ["persistence true", f"persistence_location {self.persistence_dir}/"]
        else:
            lines.append("persistence false")
        lines += [
            # 0 = unlimited; the Debian default of 1000 silently drops QoS 1 to slow subscribers.
            "max_queued_messages 0",
            *self.extra_config,
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # As root mosquitto would drop to user "mosquitto", who cannot write our temp dir.
            lines.append("user root")
        (self.workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def _command(self) -> list[str]:
        return [self.executable, "-c", str(self.workdir / "mosquitto.conf")]

    def _is_ready(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=1.0):
            pass
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"greendc-ready-{os.getpid()}-{time.monotonic_ns()}",
            protocol=mqtt.MQTTv5,
        )
        acknowledged: list[bool] = []

        def on_connect(
            _client: mqtt.Client,
            _userdata: Any,
            _flags: Any,
            reason_code: Any,
            _properties: Any,
        ) -> None:
            acknowledged.append(not reason_code.is_failure)

        client.on_connect = on_connect
        client.connect(self.host, self.port, keepalive=10)
        deadline = time.monotonic() + 2.0
        try:
            while not acknowledged and time.monotonic() < deadline:
                client.loop(timeout=0.05)
        finally:
            # Sending DISCONNECT closes the socket, so no ResourceWarning leaks into tests.
            client.disconnect()
            while client.socket() is not None and time.monotonic() < deadline + 1.0:
                client.loop(timeout=0.05)
        return bool(acknowledged) and acknowledged[0]


REPO = Path(__file__).resolve().parents[2]
COMPOSE_SECRETS_SCRIPT = REPO / "config" / "compose" / "secrets" / "generate.sh"
PRODUCTION_MOSQUITTO_CONF = REPO / "config" / "mosquitto" / "mosquitto.conf"
PRODUCTION_MOSQUITTO_ACL = REPO / "config" / "mosquitto" / "acl"


def generate_compose_secrets(out: Path) -> Path:
    """Run config/compose/secrets/generate.sh into ``out`` (passwords, password file, TLS)."""
    missing = [t for t in ("openssl", "mosquitto_passwd") if shutil.which(t) is None]
    if missing:
        raise ServerNotInstalled(f"generate.sh needs {', '.join(missing)}")
    # This interpreter (with bcrypt) first on PATH: generate.sh's hasher when htpasswd is absent.
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    proc = subprocess.run(
        ["sh", str(COMPOSE_SECRETS_SCRIPT), str(out)],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise ServerError(f"generate.sh failed:\n{proc.stdout}\n{proc.stderr}")
    return out


class ProductionMosquitto(Mosquitto):
    """Mosquitto with the repository's own config/mosquitto/mosquitto.conf and ACL.

    The shipped file as it is (password file, per-site ACL, both listeners, packet size and
    queue limits), with only its paths moved to temporary files and its listeners bound to
    free loopback ports. ``secrets`` is a directory made by generate.sh; ``users`` adds
    accounts (site gateways) to a copy of its password file.
    """

    name = "mosquitto-production"

    def __init__(
        self, secrets: Path, users: dict[str, str] | None = None, workdir: Path | None = None
    ) -> None:
        """Prepare the broker; nothing is started yet."""
        super().__init__(workdir)
        self.secrets = self.workdir / "secrets"
        shutil.copytree(secrets, self.secrets)
        for user, password in (users or {}).items():
            subprocess.run(
                ["mosquitto_passwd", "-b", str(self.secrets / "mosquitto_passwd"), user, password],
                check=True,
                capture_output=True,
                timeout=30,
            )
        self.tls_port = free_port()

    def password(self, user: str) -> str:
        """The generated password of a service account (collector, simulator, healthcheck)."""
        return (self.secrets / f"mqtt_{user}_password").read_text(encoding="utf-8").strip()

    def _write_config(self) -> None:
        text = PRODUCTION_MOSQUITTO_CONF.read_text(encoding="utf-8")
        text = text.replace("/run/secrets/", f"{self.secrets}/")
        text = text.replace("/mosquitto/config/acl", str(PRODUCTION_MOSQUITTO_ACL))
        self.persistence_dir.mkdir(exist_ok=True)
        text = text.replace("/mosquitto/data/", f"{self.persistence_dir}/")
        text = text.replace("listener 1883", f"listener {self.port} {self.host}")
        text = text.replace("listener 8883", f"listener {self.tls_port} {self.host}")
        if os.geteuid() == 0:
            text += "\nuser root\n"  # else mosquitto drops to "mosquitto", who cannot read tmp
        (self.workdir / "mosquitto.conf").write_text(text, encoding="utf-8")

    def _is_ready(self) -> bool:
        # Anonymous logins are refused: listening on both ports is the readiness signal.
        for port in (self.port, self.tls_port):
            with socket.create_connection((self.host, port), timeout=1.0):
                pass
        return True


class InfluxDB1(Server):
    """InfluxDB 1.x (Debian's influxd 1.6): v1 HTTP API only, no /api/v2."""

    name = "influxd"
    binary = "influxd"

    def __init__(self, workdir: Path | None = None) -> None:
        """Prepare the server; a second free port serves influxd's backup/RPC listener."""
        super().__init__(workdir)
        self.rpc_port = free_port()

    def _write_config(self) -> None:
        for sub in ("meta", "data", "wal"):
            (self.workdir / sub).mkdir(exist_ok=True)
        config = f"""\
reporting-disabled = true
bind-address = "{self.host}:{self.rpc_port}"

[meta]
  dir = "{self.workdir / "meta"}"

[data]
  dir = "{self.workdir / "data"}"
  wal-dir = "{self.workdir / "wal"}"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "{self.host}:{self.port}"
  log-enabled = false
"""
        (self.workdir / "influxdb.conf").write_text(config)

    def _command(self) -> list[str]:
        return [self.executable, "-config", str(self.workdir / "influxdb.conf")]

    def _is_ready(self) -> bool:
        return self._http_ok("/ping", 204)

    def create_database(self, name: str) -> None:
        """Create database ``name`` (a no-op if it exists)."""
        self.query(None, f'CREATE DATABASE "{name}"', method="POST")

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` and everything in it."""
        self.query(None, f'DROP DATABASE "{name}"', method="POST")

    def write(self, db: str, lines: str | Sequence[str], precision: str = "ns") -> None:
        """Write line protocol to ``db`` through POST /write."""
        body = lines if isinstance(lines, str) else "\n".join(lines)
        params = urllib.parse.urlencode({"db": db, "precision": precision})
        status, answer = http_request(
            f"{self.url}/write?{params}", data=body.encode(), method="POST"
        )
        if status != 204:
            raise ServerError(f"influxd /write answered {status}: {answer[:500]!r}")

    def query(self, db: str | None, influxql: str, *, method: str = "GET") -> Any:
        """Run InfluxQL through /query; return the parsed JSON; raise on any statement error."""
        params: dict[str, str] = {"q": influxql, "epoch": "ns"}
        if db is not None:
            params["db"] = db
        encoded = urllib.parse.urlencode(params)
        if method == "POST":
            result = _http_json(f"{self.url}/query", data=encoded.encode(), method="POST")
        else:
            result = _http_json(f"{self.url}/query?{encoded}")
        errors = [r["error"] for r in result.get("results", []) if "error" in r]
        if "error" in result:
            errors.append(result["error"])
        if errors:
            raise ServerError(f"influxd query {influxql!r} failed: {errors}")
        return result


class VictoriaMetrics(Server):
    """VictoriaMetrics single node: accepts influxdb-client v2 writes at /api/v2/write."""

    name = "victoria-metrics"
    binary = "victoria-metrics"

    def _command(self) -> list[str]:
        return [
            self.executable,
            f"-httpListenAddr={self.host}:{self.port}",
            f"-storageDataPath={self.workdir / 'data'}",
            # Readings may carry old timestamps; the default 1 month would drop them.
            "-retentionPeriod=100y",
            # Without these, fresh samples stay invisible to queries for 30 s.
            "-search.latencyOffset=0s",
            "-search.disableCache",
        ]

    def _is_ready(self) -> bool:
        return self._http_ok("/health")

    def flush(self) -> None:
        """Make every sample received so far visible to searches."""
        status, body = http_request(f"{self.url}/internal/force_flush")
        if status != 200:
            raise ServerError(f"victoria-metrics force_flush answered {status}: {body[:300]!r}")

    def export(self, match: str) -> list[dict[str, Any]]:
        """Return the raw series matching the selector, one dict per series (metric, values,
        timestamps in ms)."""
        self.flush()
        params = urllib.parse.urlencode({"match[]": match})
        status, body = http_request(f"{self.url}/api/v1/export?{params}")
        if status != 200:
            raise ServerError(f"victoria-metrics export answered {status}: {body[:500]!r}")
        return [json.loads(line) for line in body.decode().splitlines() if line.strip()]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query; return ``data.result``."""
        self.flush()
        params = urllib.parse.urlencode({"query": promql})
        answer = _http_json(f"{self.url}/api/v1/query?{params}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


class Prometheus(Server):
    """Prometheus scraping static targets, optionally evaluating rule files."""

    name = "prometheus"
    binary = "prometheus"

    def __init__(
        self,
        targets: Sequence[str],
        rule_files: Sequence[str | Path] = (),
        interval_seconds: float = 1.0,
        workdir: Path | None = None,
    ) -> None:
        """Prepare Prometheus scraping ``targets`` ("host:port") every ``interval_seconds``."""
        super().__init__(workdir)
        self.targets = list(targets)
        self.rule_files = [str(Path(path).resolve()) for path in rule_files]
        self.interval_seconds = interval_seconds

    def _write_config(self) -> None:
        interval = f"{int(self.interval_seconds * 1000)}ms"
        config = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval},
            "rule_files": self.rule_files,
            "scrape_configs": [
                {"job_name": "greendc", "static_configs": [{"targets": self.targets}]},
            ],
        }
        # JSON is valid YAML, so no YAML writer is needed.
        (self.workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))

    def _command(self) -> list[str]:
        return [
            self.executable,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
        ]

    def _is_ready(self) -> bool:
        return self._http_ok("/-/ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Run an instant PromQL query; return ``data.result``."""
        params = urllib.parse.urlencode({"query": promql})
        answer = _http_json(f"{self.url}/api/v1/query?{params}")
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[list[dict[str, Any]]], bool],
        deadline_seconds: float = 30.0,
    ) -> list[dict[str, Any]]:
        """Poll ``promql`` until ``predicate(result)`` holds; return that result or raise."""
        deadline = time.monotonic() + deadline_seconds
        result: list[dict[str, Any]] = []
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"prometheus query {promql!r} did not satisfy the predicate within "
                    f"{deadline_seconds} s; last result: {result!r}"
                )
            time.sleep(0.1)

    def targets_health(self) -> list[dict[str, Any]]:
        """The active scrape targets with their health, as /api/v1/targets reports them."""
        answer = _http_json(f"{self.url}/api/v1/targets")
        active: list[dict[str, Any]] = answer["data"]["activeTargets"]
        return active


PrometheusFactory = Callable[..., Prometheus]
"""The type of the ``prometheus_factory`` fixture: ``factory(targets, rule_files=...)``."""
