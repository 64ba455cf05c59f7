"""greendc's realistic data-centre simulator.

It reads the same configuration as the collector and simulates every meter of every site
by its role (the physics and its documented assumptions are in
:mod:`greendc.simulator.model`), then publishes over MQTT in the native, batch,
vendor-gateway or plain-number style (:mod:`greendc.simulator.styles`), optionally with
injected faults (:mod:`greendc.simulator.faults`).

    run(settings, SimOptions(speed=0, duration_s=30 * 86400, step_seconds=60))
    for ts, site, meter, fields in samples(settings, start_s, 86400, 60, seed=1): ...
"""

from __future__ import annotations

from collections.abc import Iterator

from greendc.config import Settings
from greendc.simulator.faults import FAULT_KINDS, FaultInjector, FaultRates, Sample, parse_faults
from greendc.simulator.model import Fields, climate_profile, iter_steps
from greendc.simulator.options import SimOptions, SimStats, parse_duration, parse_speed, parse_start
from greendc.simulator.publish import MqttPublisher, Publisher, SimulatorError, run
from greendc.simulator.styles import STYLES, Encoder, Style


def samples(
    settings: Settings, start_s: float, duration_s: float, step_s: float, seed: int = 0
) -> Iterator[tuple[float, str, str, Fields]]:
    """Yield (ts, site, meter, fields) for every meter, step by step, without a broker.

    ``fields`` holds canonical quantities (power_w, energy_wh, water_l, temp_c).
    Timestamps run from ``start_s`` in ``step_s`` steps while below ``start_s + duration_s``.
    The same arguments always give the same readings.
    """
    for ts, site, rows in iter_steps(settings, start_s, duration_s, step_s, seed):
        for meter, fields in rows:
            yield ts, site, meter, fields


__all__ = [
    "FAULT_KINDS",
    "STYLES",
    "Encoder",
    "FaultInjector",
    "FaultRates",
    "Fields",
    "MqttPublisher",
    "Publisher",
    "Sample",
    "SimOptions",
    "SimStats",
    "SimulatorError",
    "Style",
    "climate_profile",
    "parse_duration",
    "parse_faults",
    "parse_speed",
    "parse_start",
    "run",
    "samples",
]
