"""``greendc demo``: everything on embedded defaults, no external server.

1. an embedded MQTT broker (a local mosquitto if installed, else amqtt in-process);
2. last month backfilled into the embedded store straight from the simulator's model,
   and a carbon report for it through the same entry point as ``greendc report``
   (greendc.exporters.report.write_report);
3. the dashboards' JSON;
4. the collector (MQTT -> embedded store, /metrics), wired as ``greendc collect`` wires
   it (greendc.app.collect), with the simulator publishing live:
   first the last 30 minutes as fast as the broker takes them (so the 5-minute KPIs show
   at once), then in real time until Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from greendc._errors import GreendcError
from greendc.app.exits import ExitCode
from greendc.config import Settings, parse_config

if TYPE_CHECKING:
    from greendc.exporters.report.periods import Period

log = logging.getLogger("greendc.demo")

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "examples" / "four-climates.yaml"
_BACKFILL_STEP_S = 180.0
_CATCH_UP_S = 1800.0
_CONNECT_TIMEOUT_S = 30.0


def _say(text: str) -> None:
    print(f"greendc demo: {text}", flush=True)


def _previous_month(now_s: float) -> tuple[Period, float, float]:
    """Last month, and a span covering it in every site's local time."""
    from greendc.exporters.report.periods import Period

    now = datetime.fromtimestamp(now_s, UTC)
    first_this = datetime(now.year, now.month, 1, tzinfo=UTC)
    year, month = (now.year, now.month - 1) if now.month > 1 else (now.year - 1, 12)
    first_prev = datetime(year, month, 1, tzinfo=UTC)
    # A day either side so each site's local-time month is fully covered.
    return Period(year, month), first_prev.timestamp() - 86400, first_this.timestamp() + 86400


def demo_settings(
    out: Path, mqtt_url: str, protocol: str, metrics_port: int
) -> tuple[Path, Settings]:
    """The demo's config (four climates, embedded store in ``out``), written to ``out``."""
    if not DEMO_CONFIG.exists():
        raise GreendcError(f"demo config {DEMO_CONFIG} is missing: run the demo from a checkout")
    data: dict[str, Any] = yaml.safe_load(DEMO_CONFIG.read_text())
    data["mqtt"] = {
        **data.get("mqtt", {}),
        "url": mqtt_url,
        "protocol": protocol,
        "client_id": "greendc-demo-collector",
    }
    data["sinks"] = {
        "embedded": {"path": str(out / "greendc.sqlite")},
        "spool": {"dir": str(out / "spool")},
    }
    data["metrics"] = {**data.get("metrics", {}), "port": metrics_port, "listen": "127.0.0.1"}
    # Backfilled history is older than the default 7-day acceptance window of live ingest.
    data["validation"] = {**data.get("validation", {}), "max_past_seconds": 90 * 86400}
    path = out / "demo.yaml"
    path.write_text("# written by greendc demo\n" + yaml.safe_dump(data, sort_keys=False))
    return path, parse_config(data, env={})


def backfill(settings: Settings, start_s: float, end_s: float) -> int:
    """Write simulated readings for [start, end) straight into the embedded store."""
    from greendc.model import Reading
    from greendc.simulator import samples
    from greendc.store import EmbeddedStore

    assert settings.sinks.embedded is not None
    roles = {(s.name, m.name): m.role.value for s in settings.sites for m in s.meters}
    store = EmbeddedStore(settings.sinks.embedded.path)
    chunk: list[Reading] = []
    n = 0
    for ts, site, meter, fields in samples(settings, start_s, end_s - start_s, _BACKFILL_STEP_S, 7):
        chunk.append(Reading(site, meter, roles[(site, meter)], round(ts * 1000), dict(fields)))
        if len(chunk) >= 50_000:
            n += store.write(chunk)
            chunk = []
    n += store.write(chunk)
    store.close()
    return n


def demo(args: argparse.Namespace, stop: threading.Event) -> ExitCode:
    """Run the demo until ``stop`` (Ctrl-C) or ``args.duration`` seconds."""
    from greendc.app.broker import EmbeddedBroker

    for noisy in ("amqtt", "transitions"):  # their INFO lines drown the demo's own
        logging.getLogger(noisy).setLevel(logging.WARNING)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _say(f"everything goes into {out}")
    broker = EmbeddedBroker(prefer_mosquitto=args.broker != "amqtt").start()
    if args.broker == "mosquitto" and broker.kind != "mosquitto":
        broker.stop()
        raise GreendcError(
            "--broker mosquitto: no mosquitto binary found (apt-get install mosquitto)"
        )
    _say(f"embedded MQTT broker: {broker.kind} on {broker.url} (MQTT {broker.protocol})")
    try:
        return _run(args, stop, out, broker.url, broker.protocol)
    finally:
        broker.stop()


def _run(
    args: argparse.Namespace, stop: threading.Event, out: Path, url: str, protocol: str
) -> ExitCode:
    from greendc.app.collect import running_collector
    from greendc.dashboards.build import build

    config_path, settings = demo_settings(out, url, protocol, args.metrics_port)
    _say(
        f"config: {config_path} ({len(settings.sites)} sites: "
        f"{', '.join(s.name for s in settings.sites)})"
    )

    now = time.time()
    month, start_s, end_s = _previous_month(now)
    t0 = time.monotonic()
    n = backfill(settings, start_s, end_s)
    _say(
        f"backfilled {n} simulated readings for {month.label} into the embedded store "
        f"in {time.monotonic() - t0:.0f} s"
    )
    report_dir = out / "report"
    _report(settings, month, report_dir)

    dash = build(out / "dashboards")
    _say(f"Grafana dashboards: {len(dash)} JSON files in {out / 'dashboards'}")

    # The demo process has just built a report it will not need again: no gc.freeze.
    with running_collector(settings, tune_gc=False) as collector:
        assert collector.metrics is not None  # demo_settings keeps /metrics on
        if not collector.agent.wait_connected(_CONNECT_TIMEOUT_S):
            raise GreendcError(
                f"the collector did not connect to the embedded broker at {url} "
                f"within {_CONNECT_TIMEOUT_S:.0f} s"
            )
        _say(f"collector running; metrics on {collector.metrics.url}")
        with _live_simulation(settings, now):
            _say(f"open {collector.metrics.url} and look for greendc_site_pue_ratio")
            stop.wait(args.duration)
            _say("stopping")
    assert settings.sinks.embedded is not None
    _say(
        f"stopped; stored readings are in {settings.sinks.embedded.path}"
        f", the report in {report_dir}"
    )
    return ExitCode.OK


@contextmanager
def _live_simulation(settings: Settings, now: float) -> Iterator[None]:
    """The simulator publishing in a thread: the last 30 minutes at once, then real time."""
    from greendc.simulator import SimOptions
    from greendc.simulator import run as simulate

    sim_stop = threading.Event()
    step = 10.0
    live_start = math.floor(now / step) * step

    def simulate_live() -> None:
        try:
            simulate(
                settings,
                SimOptions(
                    start_s=live_start - _CATCH_UP_S,
                    duration_s=_CATCH_UP_S,
                    speed=0,
                    step_seconds=step,
                    client_id="greendc-demo-sim",
                    style="batch",
                ),
                sim_stop,
            )
            if sim_stop.is_set():
                return
            _say("caught up on the last 30 minutes; now publishing in real time (Ctrl-C stops)")
            simulate(
                settings,
                SimOptions(
                    start_s=live_start,
                    speed=1,
                    step_seconds=step,
                    client_id="greendc-demo-sim",
                    style="batch",
                ),
                sim_stop,
            )
        except GreendcError as exc:
            log.error("simulator stopped: %s", exc)

    sim = threading.Thread(target=simulate_live, name="greendc-demo-simulator", daemon=True)
    sim.start()
    try:
        yield
    finally:
        sim_stop.set()
        sim.join(15)


def _report(settings: Settings, period: Period, out: Path) -> None:
    """The carbon report for ``period`` through the same entry point as ``greendc report``."""
    from greendc.exporters.report import ReportRequest, write_report

    try:
        result = write_report(ReportRequest(settings, period, out, source="embedded"))
    except GreendcError as exc:
        log.error("the carbon report for %s failed: %s", period.label, exc)
        return
    if result.computed:
        _say(
            f"carbon report for {period.label}: {len(result.paths)} files in {out} "
            f"({len(result.notes)} data-quality notes in them)"
        )
    else:
        _say(f"carbon report for {period.label}: nothing could be computed; {out} says why")
