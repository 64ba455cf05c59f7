"""``greendc simulate``: the command-line face of the simulator package."""

from __future__ import annotations

import argparse
import logging
import threading

from greendc.config import load_config

log = logging.getLogger("greendc.simulate")


def simulate(args: argparse.Namespace, stop: threading.Event) -> int:
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
    stats = run(settings, options, stop)
    log.info(
        "published %d messages (%d readings) covering %.0f simulated seconds in %.1f s "
        "(%.0f msg/s); faults %s",
        stats.messages,
        stats.readings,
        stats.simulated_seconds,
        stats.wall_seconds,
        stats.messages_per_second,
        dict(stats.faults) or "none",
    )
    return 0 if stats.not_acked == 0 else 1
