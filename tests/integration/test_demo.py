"""The README's first command: `greendc demo` with no server installed (amqtt broker), and
the embedded broker it starts, either kind."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from greendc.app.broker import EmbeddedBroker, _mqtt_ready
from greendc.app.collect import running_collector
from tests.support.builders import make_settings
from tests.support.polling import wait_until
from tests.support.servers import Mosquitto, free_port, http_request

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _pue_sites(port: int) -> set[str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
            text = resp.read().decode()
    except OSError:
        return set()
    sites, ok = set(), set()
    for line in text.splitlines():
        site = line.split('site="', 1)[1].split('"', 1)[0] if 'site="' in line else ""
        if line.startswith("greendc_site_pue_ratio{") and 'window="5m"' in line:
            sites.add(site)
            value = float(line.rsplit(" ", 1)[1])
            assert 1.0 < value < 2.0, line
        # An incomplete PUE (the first minutes) is shown too; the demo waits for ok ones.
        if (
            line.startswith("greendc_site_kpi_quality{")
            and 'kpi="pue"' in line
            and 'quality="ok"' in line
            and 'window="5m"' in line
            and float(line.rsplit(" ", 1)[1]) == 1.0
        ):
            ok.add(site)
    return sites & ok


def test_demo_shows_pue_for_every_site_and_writes_a_report(tmp_path: Path) -> None:
    port = free_port()
    out = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "greendc.app.cli",
                "demo",
                "--out",
                str(out),
                "--broker",
                "amqtt",
                "--metrics-port",
                str(port),
                "--duration",
                "300",
            ],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        sites = {
            s["name"]
            for s in yaml.safe_load(
                (ROOT / "config" / "examples" / "four-climates.yaml").read_text()
            )["sites"]
        }
        got = wait_until(lambda: _pue_sites(port) == sites or proc.poll() is not None, 240, 0.5)
        assert got and proc.poll() is None, log.read_text()[-3000:]
        assert _pue_sites(port) == sites
        proc.send_signal(signal.SIGINT)  # Ctrl-C: a clean stop
        assert proc.wait(60) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "embedded MQTT broker: amqtt" in text
    assert "stopped; stored readings are in" in text
    # A new user sees no error or warning the demo caused itself (the broker's readiness
    # probe used to make amqtt log one of each), and the real-time simulator's rate is real.
    assert not re.findall(r"^.* (?:ERROR|WARNING|CRITICAL) .*$", text, re.MULTILINE), text
    assert "Traceback" not in text
    assert not re.search(r"\(0 msg/s\)", text), text
    assert re.search(r"covering \d+ simulated seconds .*\(0\.\d\d msg/s\)", text), text
    report = out / "report"
    names = {p.suffix for p in report.iterdir()}
    assert {".csv", ".xlsx", ".html", ".pdf"} <= names, sorted(report.iterdir())
    assert len(list((out / "dashboards").glob("*.json"))) == 4


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto"])
def test_embedded_broker_is_ready_without_a_complaint(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broker = EmbeddedBroker(prefer_mosquitto=kind == "mosquitto").start()
    try:
        assert broker.kind == kind  # mosquitto is installed on the test machines
        assert _mqtt_ready(broker.port)  # a second probe: CONNECT answered by CONNACK
    finally:
        broker.stop()
    complaints = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert not complaints, [f"{r.name}: {r.getMessage()}" for r in complaints]
    assert not _mqtt_ready(broker.port)  # stopped: nothing answers any more


def test_the_collector_wiring_collect_and_the_demo_share(
    mosquitto: Mosquitto, mqtt_topic_prefix: str, tmp_path: Path
) -> None:
    settings = make_settings(mosquitto.url, mqtt_topic_prefix, tmp_path)
    with running_collector(settings, tune_gc=False) as running:
        assert running.agent.wait_connected(10)
        assert running.metrics is not None
        url = running.metrics.url
        status, body = http_request(url)
        assert status == 200
        assert b"greendc_agent_info{" in body  # the agent's own /metrics, live
    with pytest.raises(OSError):  # leaving the block closed /metrics (and stopped the agent)
        http_request(url, timeout_seconds=2)
