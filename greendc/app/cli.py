"""The ``greendc`` command line: the public contract (README.md, "The command line").

This module is the composition root: with the rest of greendc.app, the only code that reaches
into greendc.collector, greendc.exporters, greendc.dashboards and greendc.simulator, and
only lazily inside the command that needs them (``greendc collect`` never loads pandas).
Every command returns an :class:`~greendc.app.exits.ExitCode`; :func:`main` maps greendc's
errors onto the same table.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from greendc._errors import ConfigError, GreendcError
from greendc.app.exits import ExitCode
from greendc.app.preflight import preflight
from greendc.config import Settings, load_config

if TYPE_CHECKING:
    from greendc.exporters.report.periods import Period

log = logging.getLogger("greendc")


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _wait_for_signal(extra: threading.Event | None = None) -> threading.Event:
    """An event set by SIGTERM or SIGINT (Ctrl-C)."""
    stop = extra or threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s; shutting down", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


# -- commands --------------------------------------------------------------------------------
def cmd_check_config(args: argparse.Namespace) -> ExitCode:
    """Validate a config file, and what collect reads at start-up; summarise it (secrets are
    never shown)."""
    settings = load_config(args.config)
    preflight(settings)
    meters = sum(len(s.meters) for s in settings.sites)
    print(f"{args.config}: OK")
    print(
        f"  sites: {len(settings.sites)} ({', '.join(s.name for s in settings.sites)}),"
        f" meters: {meters}"
    )
    print(
        f"  mqtt: {settings.mqtt.url} qos={settings.mqtt.qos}"
        f" user={'set' if settings.mqtt.username else 'none'}"
        f" password={'set' if settings.mqtt.password else 'none'}"
    )
    from greendc.decode import Decoder

    # What the collector subscribes to: duplicates and filters another covers left out.
    print(f"  subscriptions: {', '.join(Decoder(settings).subscriptions)}")
    print(f"  sinks: {', '.join(settings.effective_sinks)}")
    if settings.metrics.enabled:
        print(f"  metrics: http://{settings.metrics.listen}:{settings.metrics.port}/metrics")
    if settings.bridges is not None:
        print(f"  bridges: {_bridges_summary(settings)}")
    return ExitCode.OK


def run_collector(settings: Settings, stop: threading.Event) -> ExitCode:
    """Run the agent until ``stop`` is set; flush and disconnect on the way out."""
    from greendc.app.collect import running_collector

    with running_collector(settings):
        stop.wait()
    return ExitCode.OK


def cmd_collect(args: argparse.Namespace) -> ExitCode:
    """Run the agent until SIGTERM/SIGINT."""
    settings = load_config(args.config)
    preflight(settings)  # what check-config refuses, refused here before anything starts
    _setup_logging(settings.log_level)
    return run_collector(settings, _wait_for_signal())


def cmd_simulate(args: argparse.Namespace) -> ExitCode:
    """Publish a simulated data centre over MQTT (or serve it as bridge devices)."""
    if args.devices:
        from greendc.app.simulate import simulate_devices

        return simulate_devices(args, _wait_for_signal())
    from greendc.app.simulate import simulate

    return simulate(args, _wait_for_signal())


def cmd_demo(args: argparse.Namespace) -> ExitCode:
    """Everything on embedded defaults, no external server."""
    from greendc.app.demo import demo

    _setup_logging("INFO")
    return demo(args, _wait_for_signal())


def cmd_dashboards_build(args: argparse.Namespace) -> ExitCode:
    """Write the Grafana dashboards' JSON."""
    from greendc.dashboards.build import build

    out = Path(args.out) if args.out else None
    paths = build(out) if out is not None else build()
    for p in paths:
        print(p)
    return ExitCode.OK


def cmd_rules_build(args: argparse.Namespace) -> ExitCode:
    """Write the Prometheus recording and alert rules for a config."""
    from greendc.exporters.rules import write_rules

    settings = load_config(args.config)
    options = {}
    if args.job:
        options["job"] = args.job
    if args.runbook_base_url:
        options["runbook_base_url"] = args.runbook_base_url
    for p in write_rules(settings, Path(args.out), **options):
        print(p)
    return ExitCode.OK


def cmd_report(args: argparse.Namespace) -> ExitCode:
    """Write the monthly carbon report (or the EU EED annual export)."""
    from greendc.exporters.report import ReportRequest, parse_formats, write_report
    from greendc.exporters.report.request import parse_min_coverage

    formats = parse_formats(args.format)  # before reading anything: a typo costs nothing
    text = getattr(args, "min_coverage", None)
    min_coverage = parse_min_coverage(text) if text is not None else None
    request = ReportRequest(
        settings=load_config(args.config),
        period=args.month or args.year,
        out_dir=Path(args.out),
        formats=formats,
        source=args.source,
        site=args.site,
        eu_eed=args.eu_eed,
        min_coverage=min_coverage,
    )
    result = write_report(request)
    for path in result.paths:
        print(path)
    for site, note in result.notes:
        print(f"{site}: {note}", file=sys.stderr)
    label, n_sites = request.period.label, len(request.sites)
    if not result.computed:
        min_cov = request.effective_settings.kpi.min_coverage
        print(
            f"greendc report: no measured figure is ok for {label} from "
            f"{result.report.source} ({n_sites} site(s), minimum coverage {min_cov:.0%}); "
            "the files written say why for each site",
            file=sys.stderr,
        )
        return ExitCode.NO_DATA
    print(f"report for {label}: {n_sites} site(s) in {result.seconds:.1f} s", file=sys.stderr)
    return ExitCode.OK


def _period_type(parse: str) -> Callable[[str], Period]:
    """An argparse type for ``--month``/``--year`` that keeps Period's own message."""

    def convert(text: str) -> Period:
        from greendc.exporters.report.periods import Period  # pandas: only for the report

        try:
            period: Period = getattr(Period, parse)(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return period

    return convert


# -- greendc bridge ----------------------------------------------------------------------------
def _bridges_summary(settings: Settings) -> str:
    """One line on the bridge devices of a config (no secret, no address)."""
    from collections import Counter

    b = settings.bridges
    if b is None or not b.devices:
        return "no devices"
    counts = Counter(d.protocol for d in b.devices)
    kinds = ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
    return f"{len(b.devices)} devices ({kinds}), every {b.interval_seconds:g} s"


def run_bridge(settings: Settings, stop: threading.Event) -> ExitCode:
    """Poll the configured devices until ``stop`` is set; serve the bridge's /metrics."""
    from prometheus_client import CollectorRegistry, start_http_server

    from greendc.collector.bridge import Bridge, BridgeCollector

    bridge = Bridge(settings)
    server = None
    b = settings.bridges
    assert b is not None  # Bridge() refused a config without bridges:
    if b.metrics.enabled:
        registry = CollectorRegistry()
        registry.register(BridgeCollector(bridge.snapshot))
        try:
            server, _thread = start_http_server(b.metrics.port, b.metrics.listen, registry)
        except OSError as exc:
            raise GreendcError(
                f"bridges.metrics: cannot listen on {b.metrics.listen}:{b.metrics.port}"
                f" ({exc.strerror or exc}); choose another port or stop what uses it"
            ) from exc
        log.info(
            "bridge metrics on http://%s:%d/metrics", b.metrics.listen, server.server_address[1]
        )
    try:
        bridge.start()
        stop.wait()
    finally:
        bridge.stop()
        if server is not None:
            server.shutdown()
            server.server_close()
    return ExitCode.OK


def cmd_bridge(args: argparse.Namespace) -> ExitCode:
    """Poll Modbus devices and publish native readings over MQTT until SIGTERM/SIGINT."""
    settings = load_config(args.config)
    if settings.bridges is None or not settings.bridges.devices:
        raise ConfigError(
            f"{args.config}: bridges.devices: is empty or missing; list the devices to poll"
            " (see the README's 'Sensor bridges' section)"
        )
    _setup_logging(settings.log_level)
    return run_bridge(settings, _wait_for_signal())


# -- parser ----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    p = argparse.ArgumentParser(prog="greendc", description="Green data-centre energy monitor.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("check-config", help="validate a config file")
    c.add_argument("config", metavar="PATH")
    c.set_defaults(func=cmd_check_config)

    c = sub.add_parser("collect", help="run the agent (MQTT -> sinks, /metrics)")
    c.add_argument("--config", required=True, metavar="PATH")
    c.set_defaults(func=cmd_collect)

    c = sub.add_parser("bridge", help="poll Modbus devices, publish native readings over MQTT")
    c.add_argument("--config", required=True, metavar="PATH")
    c.set_defaults(func=cmd_bridge)

    c = sub.add_parser("simulate", help="publish a simulated data centre over MQTT")
    c.add_argument("--config", required=True, metavar="PATH")
    c.add_argument("--speed", default="1", help="time acceleration (e.g. 60, or 'max')")
    c.add_argument("--start", default=None, help="simulated start: RFC 3339 or 'now'")
    c.add_argument("--duration", default=None, help="simulated duration, e.g. 1h, 2d, 30d")
    c.add_argument("--step-seconds", type=float, default=10.0)
    c.add_argument("--style", default="native", help="native, batch, gateway or plain")
    c.add_argument("--faults", default="", help="e.g. dropout=0.01,spike=0.001,malformed=0.001")
    c.add_argument("--seed", type=int, default=1)
    c.add_argument(
        "--devices",
        action="store_true",
        help="serve the config's bridges.devices (Modbus, SNMP) as simulated devices instead",
    )
    c.set_defaults(func=cmd_simulate)

    c = sub.add_parser("demo", help="everything on embedded defaults, no external server")
    c.add_argument("--out", default="greendc-demo", help="folder for the store and report")
    c.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    c.add_argument("--metrics-port", type=int, default=9108)
    c.add_argument(
        "--broker",
        choices=["auto", "mosquitto", "amqtt"],
        default="auto",
        help="auto: a local mosquitto if installed, else amqtt in-process",
    )
    c.set_defaults(func=cmd_demo)

    c = sub.add_parser("report", help="monthly carbon report, or the EU EED annual export")
    c.add_argument("--config", required=True, metavar="PATH")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--month", metavar="YYYY-MM", type=_period_type("parse_month"))
    g.add_argument("--year", metavar="YYYY", type=_period_type("parse_year"))
    c.add_argument("--eu-eed", action="store_true", help="with --year: EU 2024/1364 Annex II")
    c.add_argument("--out", required=True, metavar="DIR")
    c.add_argument("--site", default=None)
    c.add_argument(
        "--format",
        default="csv,xlsx,html,pdf",
        help="comma-separated: csv, xlsx, html, pdf, csv-semicolon (';' and decimal commas)",
    )
    c.add_argument("--source", choices=["auto", "influxdb", "embedded"], default="auto")
    c.add_argument(
        "--min-coverage",
        default=None,
        metavar="SHARE",
        help="coverage a figure needs to be ok, for this run (0.8 or 80%%; default: "
        "kpi.min_coverage); under it a figure is incomplete",
    )
    c.set_defaults(func=cmd_report)

    c = sub.add_parser("dashboards", help="Grafana dashboards as code")
    dsub = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = dsub.add_parser("build", help="write the dashboards' JSON")
    d.add_argument("--out", default=None, metavar="DIR")
    d.set_defaults(func=cmd_dashboards_build)

    c = sub.add_parser("rules", help="Prometheus rules as code")
    rsub = c.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = rsub.add_parser("build", help="write recording and alert rules")
    r.add_argument("--config", required=True, metavar="PATH")
    r.add_argument("--out", default="out/rules", metavar="DIR")
    r.add_argument("--job", default=None, help="Prometheus job name of the collectors")
    r.add_argument("--runbook-base-url", default=None, help="where docs/runbooks.md is published")
    r.set_defaults(func=cmd_rules_build)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``greendc`` command; returns an :class:`ExitCode`."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help (0), or a command line argparse could not parse (2)
        return exc.code if isinstance(exc.code, int) else ExitCode.INVALID
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"greendc: configuration error: {exc}", file=sys.stderr)
        return ExitCode.INVALID
    except GreendcError as exc:
        print(f"greendc: {exc}", file=sys.stderr)
        return ExitCode.FAILURE


if __name__ == "__main__":
    sys.exit(main())
