"""Options and results of a simulator run, and parsers for their command-line forms."""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from greendc._errors import ConfigError
from greendc.simulator.faults import FaultRates
from greendc.simulator.styles import STYLES, Style


@dataclass(frozen=True)
class SimOptions:
    """How to run the simulator.

    ``start_s`` None means now (rounded down to a whole step); ``duration_s`` None means
    until stopped. ``speed`` is simulated seconds per wall-clock second (1 = real time,
    60 = an hour a minute); 0 publishes as fast as the broker acknowledges.
    """

    style: Style = "native"
    start_s: float | None = None
    duration_s: float | None = None
    speed: float = 1.0
    step_seconds: float = 10.0
    seed: int = 0
    faults: FaultRates = field(default_factory=FaultRates)
    qos: int = 1
    max_inflight: int = 1000  # unacknowledged messages at once (paho's hard limit is 65,535)
    client_id: str = "greendc-simulator"
    topic_prefix: str = "greendc"
    gateway_topic: str = "site/{site}/gw/{gw}"
    plain_prefix: str = "plain"
    connect_timeout_seconds: float = 10.0
    flush_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        problems = []
        if self.style not in STYLES:
            problems.append(f"style: {self.style!r} is not one of {', '.join(STYLES)}")
        if not (self.step_seconds > 0 and math.isfinite(self.step_seconds)):
            problems.append(f"step_seconds: must be a positive number (got {self.step_seconds})")
        if not (self.speed >= 0 and math.isfinite(self.speed)):
            problems.append(f"speed: must be 0 (as fast as possible) or more (got {self.speed})")
        if self.duration_s is not None and not self.duration_s > 0:
            problems.append(f"duration_s: must be positive (got {self.duration_s})")
        if self.qos not in (0, 1, 2):
            problems.append(f"qos: must be 0, 1 or 2 (got {self.qos})")
        if not 1 <= self.max_inflight <= 65535:
            problems.append(f"max_inflight: must be 1-65535 (got {self.max_inflight})")
        if problems:
            raise ConfigError("invalid simulator options: " + "; ".join(problems), problems)


@dataclass
class SimStats:
    """What a run did. Rates are per wall-clock second."""

    messages: int = 0
    readings: int = 0
    payload_bytes: int = 0
    acked: int = 0
    not_acked: int = 0
    steps: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    wall_seconds: float = 0.0
    faults: Counter[str] = field(default_factory=Counter)

    @property
    def messages_per_second(self) -> float:
        """Published messages per wall-clock second."""
        return self.messages / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def simulated_seconds(self) -> float:
        """Simulated time covered, first to last step."""
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return self.last_ts - self.first_ts

    def summary(self) -> str:
        """One line for the log: what was published, how fast, and what the broker missed.

        A paced run publishes a few messages a second (four sites in real time: 0.4), so
        the rate keeps two decimals below 10 rather than reading "0 msg/s".
        """
        rate = self.messages_per_second
        rate_text = f"{rate:,.0f}" if rate >= 10 else f"{rate:.2f}"
        return (
            f"published {self.messages:,} messages ({self.readings:,} readings) covering "
            f"{self.simulated_seconds:,.0f} simulated seconds in {self.wall_seconds:.1f} s "
            f"({rate_text} msg/s); {self.not_acked} not acknowledged"
        )


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)?\s*$")
_UNIT_SECONDS = {
    None: 1.0,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}


def parse_duration(text: str) -> float:
    """Seconds from ``3600``, ``90s``, ``30m``, ``6h``, ``30d`` or ``2w``."""
    m = _DURATION.match(text)
    if m is None or float(m.group(1)) <= 0:
        raise ConfigError(f"--duration: {text!r} should look like 3600, 30m, 6h, 30d or 2w")
    return float(m.group(1)) * _UNIT_SECONDS[m.group(2)]


def parse_speed(text: str) -> float:
    """Speed factor from ``60``, ``1``, ``0`` or ``max`` (both mean as fast as possible)."""
    if text.strip().lower() in ("max", "0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"--speed: {text!r} is not a number or 'max'") from None
    if not (value > 0 and math.isfinite(value)):
        raise ConfigError(f"--speed: {text!r} must be positive, 0 or 'max'")
    return value


def parse_start(text: str) -> float | None:
    """Unix seconds from ``now`` (None), Unix seconds, or an ISO 8601 / RFC 3339 time.

    A time without a zone is taken as UTC; a bare date means its midnight UTC.
    """
    t = text.strip()
    if t.lower() == "now":
        return None
    try:
        return float(t)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"--start: {text!r} should be 'now', Unix seconds or like 2026-01-05T00:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
