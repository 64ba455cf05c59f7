"""`greendc collect` as a subprocess for integration tests: start, watch /metrics, stop.

The collector runs exactly as an operator runs it (the installed command, a YAML file, its
own process); the tests read what it stored from the embedded SQLite store afterwards.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from prometheus_client.parser import text_string_to_metric_families

from tests.support.polling import wait_until
from tests.support.servers import free_port, http_request

ROOT = Path(__file__).resolve().parents[2]
GREENDC = ROOT / ".venv" / "bin" / "greendc"

StoredRow = tuple[str, str, str, int, float | None, float | None, float | None, float | None]


class Collector:
    """One ``greendc collect --config FILE`` process with /metrics on a free port.

    ``config`` is the configuration as data; ``metrics.port`` and the embedded store and
    spool (under ``workdir``) are filled in unless given.
    """

    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.store = workdir / "store.sqlite"
        config = {**config}
        config["metrics"] = {"port": self.port, **config.get("metrics", {})}
        sinks = {**config.get("sinks", {})}
        sinks.setdefault("embedded", {"path": str(self.store)})
        sinks.setdefault("spool", {"dir": str(workdir / "spool")})
        sinks.setdefault("flush_interval_seconds", 0.2)
        config["sinks"] = sinks
        self.config_path = workdir / "collector.yaml"
        self.config_path.write_text(json.dumps(config))
        self.log = workdir / "collector.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        """Start the process and return once it is connected and subscribed."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("GREENDC_")}
        with self.log.open("ab") as fh:
            self._proc = subprocess.Popen(
                [str(GREENDC), "collect", "--config", str(self.config_path)],
                cwd=self.workdir,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        assert wait_until(lambda: self.value("greendc_agent_mqtt_connected") == 1, 30), (
            self.log_tail()
        )
        return self

    def stop(self) -> None:
        """SIGTERM (which flushes every sink) and wait for a clean exit."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(30)
            except subprocess.TimeoutExpired as exc:
                proc.kill()
                proc.wait(10)
                raise AssertionError(
                    "collector did not stop within 30 s\n" + self.log_tail()
                ) from exc
            assert code == 0, f"collector exited with {code}\n{self.log_tail()}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        elif self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)
            self._proc = None

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the collector's log."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def scrape(self) -> str | None:
        """The /metrics text, or None while it does not answer."""
        try:
            status, body = http_request(f"http://127.0.0.1:{self.port}/metrics", timeout_seconds=2)
        except OSError:
            return None
        return body.decode() if status == 200 else None

    def value(self, name: str, **labels: str) -> float | None:
        """Sum of the samples of ``name`` whose labels include ``labels`` (None: no answer)."""
        text = self.scrape()
        if text is None:
            return None
        total = 0.0
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    total += s.value
        return total

    def wait_accepted(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until the agent has accepted exactly ``count`` readings."""
        assert wait_until(
            lambda: self.value("greendc_agent_readings_accepted_total") == count, timeout_s
        ), (
            f"accepted {self.value('greendc_agent_readings_accepted_total')} of {count}\n"
            + self.log_tail()
        )

    def rows(self) -> list[StoredRow]:
        """Every stored row, ordered by site, meter and time."""
        db = sqlite3.connect(str(self.store))
        try:
            return [
                tuple(r)  # type: ignore[misc]
                for r in db.execute(
                    "SELECT site, meter, role, ts_ms, power_w, energy_wh, water_l, temp_c"
                    " FROM greendc_reading ORDER BY site, meter, ts_ms"
                )
            ]
        finally:
            db.close()
