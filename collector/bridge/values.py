"""Device values to canonical readings: the one place a bridge validates and converts units.

Every protocol hands raw values here with the unit and scale its profile declares; what comes
out is a float in the quantity's canonical unit (W, Wh, L, C), or :class:`Refused` with a
catalogued reason (:data:`REFUSAL_REASONS`). Nothing is clamped or replaced: a refused value
is counted and left out, so the meter keeps its last good value in the collector and goes
stale there if the device keeps sending nonsense.
"""

from __future__ import annotations

import math
from decimal import Context, Decimal
from typing import NamedTuple

from greendc.model import UNITS, Quantity

# Why a device value was not published; label values of greendc_bridge_values_refused_total.
REFUSAL_REASONS: dict[str, str] = {
    "wrong_type": "the device sent something that is not a number (text, a boolean, null)",
    "non_finite": "the device sent NaN or an infinity (a float register's 'no value')",
    "out_of_range": "the value is outside the plausible range of its register or quantity",
    "negative_counter": "a cumulative counter (energy, water) is negative",
    "missing": "the device has no such value (SNMP noSuchObject / noSuchInstance, no rows)",
    "wrong_unit": "the device's own unit does not fit the quantity (a kW point read as C)",
}

# Enough digits that an integer register (up to 2^64) times a decimal scale is exact.
_EXACT = Context(prec=60)


class Missing:
    """The raw value of something the device says it does not have."""

    def __init__(self, what: str) -> None:
        self.what = what

    def __repr__(self) -> str:
        return f"Missing({self.what!r})"


class WrongUnit:
    """The raw value of a point whose device-reported unit does not fit its quantity."""

    def __init__(self, unit: str) -> None:
        self.unit = unit

    def __repr__(self) -> str:
        return f"WrongUnit({self.unit!r})"


class Refused(Exception):
    """A device value that is not published, with a reason from :data:`REFUSAL_REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RawValue(NamedTuple):
    """One value as a device gave it, with what its profile says about it."""

    quantity: Quantity
    raw: object
    unit: str
    scale: float = 1.0
    limits: tuple[float, float] | None = None  # plausible range, canonical units


_COUNTERS = frozenset({Quantity.ENERGY_WH, Quantity.WATER_L})


def _factor(scale: float, unit: str, quantity: Quantity) -> Decimal:
    # repr() gives the shortest decimal that round-trips: a scale written 0.1 is exactly 1/10.
    return _EXACT.multiply(Decimal(repr(scale)), Decimal(repr(UNITS[quantity][unit])))


def to_canonical(value: RawValue, default_limits: tuple[float, float]) -> float:
    """The value in its quantity's canonical unit, or raise :class:`Refused`.

    Scaling is decimal: an integer register 12345 with scale 0.1 gives exactly the float
    nearest 1234.5 (not 1234.5000000000002); a float times a whole factor (kW -> W) is one
    correctly rounded multiplication.
    """
    raw = value.raw
    if isinstance(raw, Missing):
        raise Refused("missing", f"{value.quantity.value}: {raw.what}")
    if isinstance(raw, WrongUnit):
        raise Refused("wrong_unit", f"{value.quantity.value}: the device says {raw.unit}")
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Refused("wrong_type", f"{value.quantity.value}: {type(raw).__name__} {raw!r:.40}")
    if isinstance(raw, float) and not math.isfinite(raw):
        raise Refused("non_finite", f"{value.quantity.value}: {raw!r}")
    factor = _factor(value.scale, value.unit, value.quantity)
    if isinstance(raw, int):
        out = float(_EXACT.multiply(Decimal(raw), factor))
    elif factor == factor.to_integral_value():
        out = raw * float(factor)
    else:
        out = float(_EXACT.multiply(Decimal(raw), factor))
    if not math.isfinite(out):
        raise Refused("non_finite", f"{value.quantity.value}: {raw!r} x {factor} overflows")
    if value.quantity in _COUNTERS and out < 0:
        raise Refused("negative_counter", f"{value.quantity.value}: {out!r}")
    lo, hi = value.limits if value.limits is not None else default_limits
    if not lo <= out <= hi:
        raise Refused("out_of_range", f"{value.quantity.value}: {out!r} is outside [{lo}, {hi}]")
    return out
