"""Payload styles: how a step's readings become MQTT messages.

``native``   greendc/<site>/<meter>, {"ts": 1764374400.0, "power_w": ..., "energy_wh": ...}
``batch``    greendc/<site>, [{"meter": "ups-1", "ts": ..., "power_w": ...}, ...]
``gateway``  a vendor-style gateway (config/examples/gateway.yaml): site/<site>/gw/<gw>,
             {"gw": "gw-1", "gw_ts": "2026-01-05T10:00:00.000Z",
              "points": [{"id": "ups-1", "t": "...Z", "kW": 412.5, "kWh": 123456.7}, ...]}
             at most 8 points per gateway; "t" equals "gw_ts" unless that point's clock is
             skewed; water in "m3", outdoor temperature in "degC".
``plain``    one topic per meter and quantity, the payload a bare number
             (config/examples/plain-numbers.yaml): plain/<site>/<meter>/power_kw "412.5",
             .../energy_kwh, .../water_m3, .../temp_c. Such devices send no timestamp, so the
             collector stamps arrival time: use this style in real time (--speed 1).

Readings flagged ``corrupt`` by fault injection make their message invalid (truncated).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Literal

from greendc.simulator.faults import Sample

Style = Literal["native", "batch", "gateway", "plain"]
STYLES: tuple[Style, ...] = ("native", "batch", "gateway", "plain")
GATEWAY_POINTS = 8

# Canonical field -> (gateway key, plain topic suffix, divisor to that unit).
_UNIT_KEYS: dict[str, tuple[str, str, float]] = {
    "power_w": ("kW", "power_kw", 1e3),
    "energy_wh": ("kWh", "energy_kwh", 1e3),
    "water_l": ("m3", "water_m3", 1e3),
    "temp_c": ("degC", "temp_c", 1.0),
}


def rfc3339(ts_s: float) -> str:
    """Unix seconds as an RFC 3339 UTC timestamp with milliseconds."""
    text = datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def _dumps(obj: object) -> bytes:
    # allow_nan: an injected NaN must reach the wire as the (invalid) JSON token NaN.
    return json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()


def _break(payload: bytes) -> bytes:
    """A truncated payload: what a gateway sends when its buffer is cut short."""
    return payload[: max(1, len(payload) // 2)]


def _scaled(value: object, divisor: float) -> object:
    if isinstance(value, float | int) and not isinstance(value, bool):
        # Rounded so kW and kWh read like a meter's register, not like 412.49999999999994.
        return round(value / divisor, 7) if divisor != 1.0 else value
    return value  # an injected string stays as it is


class Encoder:
    """Turns the samples of one site and step into (topic, payload) messages."""

    def __init__(
        self,
        style: Style,
        *,
        topic_prefix: str = "greendc",
        gateway_topic: str = "site/{site}/gw/{gw}",
        plain_prefix: str = "plain",
    ) -> None:
        if style not in STYLES:
            raise ValueError(f"style {style!r} is not one of {', '.join(STYLES)}")
        self.style = style
        self.topic_prefix = topic_prefix
        self.gateway_topic = gateway_topic
        self.plain_prefix = plain_prefix

    def encode(self, ts: float, site: str, samples: list[Sample]) -> Iterator[tuple[str, bytes]]:
        """Messages for one site's samples taken at step time ``ts``."""
        if self.style == "native":
            for s in samples:
                payload = _dumps({"ts": s.ts, **s.fields})
                yield (
                    f"{self.topic_prefix}/{site}/{s.meter}",
                    (_break(payload) if s.corrupt else payload),
                )
        elif self.style == "batch":
            if samples:
                payload = _dumps([{"meter": s.meter, "ts": s.ts, **s.fields} for s in samples])
                corrupt = any(s.corrupt for s in samples)
                yield f"{self.topic_prefix}/{site}", _break(payload) if corrupt else payload
        elif self.style == "gateway":
            yield from self._gateway(ts, site, samples)
        else:
            yield from self._plain(site, samples)

    def _gateway(self, ts: float, site: str, samples: list[Sample]) -> Iterator[tuple[str, bytes]]:
        gw_ts = rfc3339(ts)
        for n, i in enumerate(range(0, len(samples), GATEWAY_POINTS), start=1):
            chunk = samples[i : i + GATEWAY_POINTS]
            points = []
            for s in chunk:
                point: dict[str, object] = {"id": s.meter, "t": rfc3339(s.ts)}
                for name, value in s.fields.items():
                    key, _, divisor = _UNIT_KEYS[name]
                    point[key] = _scaled(value, divisor)
                points.append(point)
            gw = f"gw-{n}"
            payload = _dumps({"gw": gw, "gw_ts": gw_ts, "points": points})
            if any(s.corrupt for s in chunk):
                payload = _break(payload)
            yield self.gateway_topic.format(site=site, gw=gw), payload

    def _plain(self, site: str, samples: list[Sample]) -> Iterator[tuple[str, bytes]]:
        for s in samples:
            for name, value in s.fields.items():
                _, suffix, divisor = _UNIT_KEYS[name]
                scaled = _scaled(value, divisor)
                text = repr(scaled) if isinstance(scaled, float) else str(scaled)
                if text == "nan":
                    text = "NaN"
                payload = text.encode()
                if s.corrupt:
                    payload = payload + b".9.9"  # "12.5.9.9": not a number
                yield f"{self.plain_prefix}/{site}/{s.meter}/{suffix}", payload
