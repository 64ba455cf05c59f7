"""The domain vocabulary: meter roles, measured quantities, units, and the reading record."""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Role(StrEnum):
    """What a meter measures in the site's energy balance (site configuration, not the device)."""

    FACILITY = "facility"  # total energy input: incomers and generators, before transfer switchgear
    IT = "it"  # IT load at its measurement point (see ITPoint)
    COOLING = "cooling"
    LIGHTING = "lighting"
    OTHER_OVERHEAD = "other_overhead"
    RENEWABLE_ONSITE = "renewable_onsite"
    GRID_IMPORT = "grid_import"
    GENERATOR = "generator"
    HEAT_REUSE = "heat_reuse"
    WATER = "water"


class ITPoint(StrEnum):
    """Where IT energy is measured; fixes the PUE category (The Green Grid; ISO/IEC 30134-2)."""

    UPS_OUTPUT = "ups_output"  # Category 1 (PUE1)
    PDU_OUTPUT = "pdu_output"  # Category 2 (PUE2)
    IT_INPUT = "it_input"  # Category 3 (PUE3)

    @property
    def category(self) -> int:
        """The PUE measurement category this point gives (1, 2 or 3)."""
        return {"ups_output": 1, "pdu_output": 2, "it_input": 3}[self.value]


class Quantity(StrEnum):
    """A measured quantity; the value is the stored field name, with its canonical unit."""

    POWER_W = "power_w"  # instantaneous power, watts
    ENERGY_WH = "energy_wh"  # cumulative energy counter, watt-hours
    WATER_L = "water_l"  # cumulative water counter, litres
    TEMP_C = "temp_c"  # temperature, degrees Celsius


# Multipliers from each accepted unit to the quantity's canonical unit.
UNITS: dict[Quantity, dict[str, float]] = {
    Quantity.POWER_W: {"W": 1.0, "kW": 1e3, "MW": 1e6},
    Quantity.ENERGY_WH: {"Wh": 1.0, "kWh": 1e3, "MWh": 1e6, "J": 1.0 / 3600.0},
    Quantity.WATER_L: {"L": 1.0, "m3": 1e3},
    Quantity.TEMP_C: {"C": 1.0},
}

CANONICAL_UNIT: dict[Quantity, str] = {
    Quantity.POWER_W: "W",
    Quantity.ENERGY_WH: "Wh",
    Quantity.WATER_L: "L",
    Quantity.TEMP_C: "C",
}


class Reading(NamedTuple):
    """One validated observation of one meter at one instant.

    ``fields`` maps quantity names (``power_w``, ``energy_wh``, ...) to floats in canonical
    units. ``ts_ms`` is Unix time in integer milliseconds (the precision every sink writes).
    ``role`` is the meter's configured role, or ``"unknown"`` for an accepted unknown meter.
    """

    site: str
    meter: str
    role: str
    ts_ms: int
    fields: dict[str, float]
