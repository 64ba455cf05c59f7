"""``greendc simulate``: the command-line face of the simulator package."""

from __future__ import annotations

import argparse
import logging
import threading

from greendc.app.exits import ExitCode
from greendc.config import load_config

log = logging.getLogger("greendc.simulate")


def simulate(args: argparse.Namespace, stop: threading.Event) -> ExitCode:
    """Publish the simulated sites of ``args.config`` until the duration ends or ``stop``."""
    from greendc.simulator import (
        SimOptions,
        parse_duration,
        parse_faults,
        parse_speed,
        parse_start,
        run,
    )

    settings = load_config(args.config)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    options = SimOptions(
        style=args.style,
        start_s=parse_start(args.start) if args.start else None,
        duration_s=parse_duration(args.duration) if args.duration else None,
        speed=parse_speed(args.speed),
        step_seconds=args.step_seconds,
        seed=args.seed,
        faults=parse_faults(args.faults) if args.faults else parse_faults(""),
        qos=settings.mqtt.qos,
        client_id=f"{settings.mqtt.client_id}-simulator",
    )
    log.info(
        "simulating %d sites (%s style) to %s",
        len(settings.sites),
        options.style,
        settings.mqtt.url,
    )
    stats = run(settings, options, stop)  # logs its own summary (SimStats.summary)
    if stats.faults:
        log.info("faults injected: %s", dict(stats.faults))
    if stats.not_acked:
        log.error(
            "%d messages were not acknowledged by the broker at %s",
            stats.not_acked,
            settings.mqtt.url,
        )
        return ExitCode.FAILURE
    return ExitCode.OK


def simulate_devices(args: argparse.Namespace, stop: threading.Event) -> ExitCode:
    """Serve the config's bridge devices with simulated values until ``stop``.

    The devices listen on the hosts and ports of ``bridges.devices`` (loopback in
    config/examples/bridge-demo.yaml), so ``greendc bridge`` on the same config reads them.
    """
    from greendc.simulator.devices import SimulatedDevices

    settings = load_config(args.config)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    with SimulatedDevices(settings, seed=args.seed, step_s=args.step_seconds) as devices:
        log.info(
            "serving %d Modbus TCP gateways (%s), %d SNMP agents (%s), %d Redfish services"
            " and %d BACnet devices; values every %g s",
            len(devices.modbus),
            ", ".join(f"{h}:{p}" for h, p in devices.modbus) or "none",
            len(devices.agents),
            ", ".join(f"{h}:{p}/udp" for h, p in devices.agents) or "none",
            len(devices.redfish),
            len(devices.bacnet),
            args.step_seconds,
        )
        stop.wait()
    return ExitCode.OK
