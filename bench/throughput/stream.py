"""The stream every contender consumes: single-reading messages or gateway batches, and
the meters a greendc config needs for it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.throughput.common import SITE


@dataclass(frozen=True)
class Stream:
    """One pre-encoded burst."""

    kind: str  # "single" or "batch50"
    meters: int
    readings: int
    messages: int
    filter: str  # the MQTT filter a generic consumer subscribes to
    items: list[tuple[bytes, bytes]]  # (topic, payload)


def make_stream(kind: str, readings: int, meters: int, batch: int, base_ts: int) -> Stream:
    """Readings over ``meters`` meters, meter-major per round, each meter one per second."""
    per_meter = max(1, readings // meters)
    items: list[tuple[bytes, bytes]] = []
    if kind == "single":
        for k in range(per_meter):
            for m in range(meters):
                power_w = 1000 + (m * 7 + k) % 500 + 0.5
                items.append(
                    (
                        f"greendc/{SITE}/m{m:06d}".encode(),
                        f'{{"ts": {base_ts + k}, "power_w": {power_w}, '
                        f'"energy_wh": {1000000 + m + k * 10}.0}}'.encode(),
                    )
                )
        return Stream(kind, meters, per_meter * meters, len(items), f"greendc/{SITE}/+", items)
    rows: list[str] = []
    topic = f"greendc/{SITE}".encode()
    for k in range(per_meter):
        for m in range(meters):
            power_w = 1000 + (m * 7 + k) % 500 + 0.5
            rows.append(
                f'{{"meter": "m{m:06d}", "ts": {base_ts + k}, "power_w": {power_w}, '
                f'"energy_wh": {1000000 + m + k * 10}.0}}'
            )
            if len(rows) == batch:
                items.append((topic, ("[" + ", ".join(rows) + "]").encode()))
                rows = []
    if rows:
        items.append((topic, ("[" + ", ".join(rows) + "]").encode()))
    return Stream(kind, meters, per_meter * meters, len(items), f"greendc/{SITE}", items)


def bench_meters(n: int) -> list[dict[str, Any]]:
    """The site's meters for a stream over ``n``: one incomer, a few coolers, the rest IT."""
    out: list[dict[str, Any]] = []
    for m in range(n):
        name = f"m{m:06d}"
        if m == 0:
            out.append({"name": name, "role": "facility"})
        elif m < 10:
            out.append({"name": name, "role": "cooling"})
        else:
            out.append({"name": name, "role": "it", "point": "ups_output"})
    return out
